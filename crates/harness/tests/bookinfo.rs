//! Istio's Bookinfo traffic-management tasks over `examples/bookinfo`, in process:
//! the example's Services and WorkloadEntries (moved to fresh loopback addresses),
//! plus Istio's own task files from `samples/bookinfo/networking/`, unchanged.
//!
//! The harness's test apps do not call each other, so each hop is tested where Istio
//! applies its rules: at the caller's sidecar (productpage's for `reviews`, reviews'
//! for `ratings`). The whole chain, through the ingress gateway, is the smoke test of
//! `skiff up examples/bookinfo` (crates/cli/tests/bookinfo.rs).
//!
//! The task files live outside the repository (`../shared/corpus` next to it, or
//! `$SKIFF_CORPUS`): without them these tests pass with a note, except under CI (`CI`
//! set), where a missing corpus is a failure.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use skiff_harness::{Mesh, header};

const PRODUCTPAGE: &str = "productpage-v1.default";
const REVIEWS_V2: &str = "reviews-v2.default";
const REVIEWS: &str = "http://reviews:9080/reviews/0";
const RATINGS: &str = "http://ratings:9080/ratings/0";

/// `$SKIFF_CORPUS`, else the first `shared/corpus` next to an ancestor of this crate.
fn corpus() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SKIFF_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|c| c.join("istio").is_dir())
}

/// Istio's Bookinfo task files, or `None` (with a note) when the corpus is missing
/// outside CI.
fn task_files() -> Option<PathBuf> {
    let dir = corpus().map(|c| c.join("istio/samples/bookinfo/networking"));
    match dir {
        Some(dir) if dir.is_dir() => Some(dir),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "Istio's Bookinfo task files (shared/corpus/istio/samples/bookinfo/networking) are missing; set SKIFF_CORPUS"
            );
            eprintln!(
                "skipped: no shared/corpus/istio/samples/bookinfo/networking next to the repository (set SKIFF_CORPUS)"
            );
            None
        }
    }
}

/// One of Istio's task files, as Istio ships it.
fn task(dir: &Path, name: &str) -> Result<String> {
    std::fs::read_to_string(dir.join(name)).with_context(|| format!("Istio's {name}"))
}

/// The files of `examples/bookinfo`, each `127.0.20.N` address turned into
/// `{{ip.bookinfoN}}` so that the harness gives the mesh fresh addresses.
fn example() -> Result<Vec<(String, String)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let mut text = std::fs::read_to_string(&path)?;
            while let Some(at) = text.find("127.0.20.") {
                let digits: String = text[at + 9..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect();
                text.replace_range(
                    at..at + 9 + digits.len(),
                    &format!("{{{{ip.bookinfo{digits}}}}}"),
                );
            }
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            files.push((name.into_owned(), text));
        }
    }
    Ok(files)
}

/// Bookinfo with Istio's `destination-rule-all.yaml` (the subsets every task uses)
/// and the given task files.
async fn bookinfo(dir: &Path, tasks: &[&str]) -> Result<Mesh> {
    let mut files = example()?;
    for name in ["destination-rule-all.yaml"].iter().chain(tasks) {
        files.push((name.to_string(), task(dir, name)?));
    }
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    Mesh::start(&files).await
}

/// Applies a task file as a user does in the walkthrough: copied into the directory.
async fn apply(mesh: &Mesh, dir: &Path, name: &str) -> Result<()> {
    mesh.write_config(name, &task(dir, name)?).await?;
    mesh.wait_synced().await
}

/// Removes a task file, as `kubectl delete -f` in Istio's cleanup steps.
async fn delete(mesh: &Mesh, name: &str) -> Result<()> {
    mesh.write_config(name, "").await?;
    mesh.wait_synced().await
}

/// `n` GETs of `url` from `from`'s app with `headers`: how many each workload answered.
async fn spread(
    mesh: &Mesh,
    from: &str,
    url: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Result<BTreeMap<String, usize>> {
    let mut seen = BTreeMap::new();
    for _ in 0..n {
        let reply = mesh.get_via_with(from, url, headers).await?;
        anyhow::ensure!(reply.status == 200, "{url} from {from}: {reply:?}");
        *seen
            .entry(reply.header(header::APP).to_owned())
            .or_default() += 1;
    }
    Ok(seen)
}

/// `[lo, hi]`: the counts of a binomial(n, p) within six standard deviations of its
/// mean, a bound a correct split essentially never leaves.
fn six_sigma(n: usize, p: f64) -> (usize, usize) {
    let n = n as f64;
    let mean = n * p;
    let margin = 6.0 * (n * p * (1.0 - p)).sqrt();
    (
        (mean - margin).max(0.0).floor() as usize,
        (mean + margin).min(n).ceil() as usize,
    )
}

fn only(seen: &BTreeMap<String, usize>, app: &str, n: usize) {
    assert_eq!(seen.get(app), Some(&n), "all to {app}: {seen:?}");
}

/// Request routing: `virtual-service-all-v1.yaml` sends everything to v1; then
/// `virtual-service-reviews-test-v2.yaml` sends `end-user: jason` to reviews v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_routing_all_v1_then_jason_to_reviews_v2() -> Result<()> {
    let Some(dir) = task_files() else {
        return Ok(());
    };
    let mesh = bookinfo(&dir, &["virtual-service-all-v1.yaml"]).await?;
    only(
        &spread(&mesh, PRODUCTPAGE, REVIEWS, &[], 30).await?,
        "reviews-v1.default",
        30,
    );
    only(
        &spread(&mesh, PRODUCTPAGE, "http://details:9080/details/0", &[], 5).await?,
        "details-v1.default",
        5,
    );
    only(
        &spread(&mesh, REVIEWS_V2, RATINGS, &[], 5).await?,
        "ratings-v1.default",
        5,
    );

    apply(&mesh, &dir, "virtual-service-reviews-test-v2.yaml").await?;
    let jason = [("end-user", "jason")];
    only(
        &spread(&mesh, PRODUCTPAGE, REVIEWS, &jason, 30).await?,
        "reviews-v2.default",
        30,
    );
    only(
        &spread(&mesh, PRODUCTPAGE, REVIEWS, &[], 30).await?,
        "reviews-v1.default",
        30,
    );
    let other = [("end-user", "jasonx")];
    only(
        &spread(&mesh, PRODUCTPAGE, REVIEWS, &other, 10).await?,
        "reviews-v1.default",
        10,
    );
    Ok(())
}

/// Traffic shifting: 50/50 between v1 and v3, then all to v3; and the canary splits
/// 80/20 and 90/10 between v1 and v2. Each split within its binomial bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_shifting_splits_within_binomial_bounds() -> Result<()> {
    let Some(dir) = task_files() else {
        return Ok(());
    };
    const N: usize = 400;
    let mesh = bookinfo(&dir, &["virtual-service-all-v1.yaml"]).await?;

    apply(&mesh, &dir, "virtual-service-reviews-50-v3.yaml").await?;
    let seen = spread(&mesh, PRODUCTPAGE, REVIEWS, &[], N).await?;
    let v3 = seen.get("reviews-v3.default").copied().unwrap_or(0);
    let (lo, hi) = six_sigma(N, 0.5);
    assert!(
        (lo..=hi).contains(&v3),
        "v3 {v3} of {N} outside [{lo}, {hi}]: {seen:?}"
    );
    assert_eq!(
        v3 + seen.get("reviews-v1.default").copied().unwrap_or(0),
        N,
        "{seen:?}"
    );

    apply(&mesh, &dir, "virtual-service-reviews-v3.yaml").await?;
    only(
        &spread(&mesh, PRODUCTPAGE, REVIEWS, &[], 30).await?,
        "reviews-v3.default",
        30,
    );

    for (file, p) in [
        ("virtual-service-reviews-80-20.yaml", 0.2),
        ("virtual-service-reviews-90-10.yaml", 0.1),
    ] {
        // One reviews VirtualService at a time: remove the previous task's files.
        for old in [
            "virtual-service-reviews-50-v3.yaml",
            "virtual-service-reviews-v3.yaml",
            "virtual-service-reviews-80-20.yaml",
        ] {
            delete(&mesh, old).await?;
        }
        apply(&mesh, &dir, file).await?;
        let seen = spread(&mesh, PRODUCTPAGE, REVIEWS, &[], N).await?;
        let v2 = seen.get("reviews-v2.default").copied().unwrap_or(0);
        let (lo, hi) = six_sigma(N, p);
        assert!(
            (lo..=hi).contains(&v2),
            "{file}: v2 {v2} of {N} outside [{lo}, {hi}]: {seen:?}"
        );
        assert_eq!(
            v2 + seen.get("reviews-v1.default").copied().unwrap_or(0),
            N,
            "{seen:?}"
        );
    }
    Ok(())
}

/// Fault injection: `virtual-service-ratings-test-abort.yaml` answers jason's calls to
/// ratings 500 at the caller's sidecar (flag `FI`), others reach ratings;
/// `virtual-service-ratings-test-delay.yaml` compiles to a 7 s delay of every one of
/// jason's calls (its timing is the proxy's fault tests' business, with paused time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_injection_aborts_jasons_calls_to_ratings() -> Result<()> {
    let Some(dir) = task_files() else {
        return Ok(());
    };
    let mesh = bookinfo(
        &dir,
        &[
            "virtual-service-all-v1.yaml",
            "virtual-service-reviews-test-v2.yaml",
        ],
    )
    .await?;
    apply(&mesh, &dir, "virtual-service-ratings-test-abort.yaml").await?;
    let jason = [("end-user", "jason")];
    for _ in 0..10 {
        let reply = mesh.get_via_with(REVIEWS_V2, RATINGS, &jason).await?;
        assert_eq!(reply.status, 500, "{reply:?}");
        assert_eq!(
            reply.header(header::APP),
            "",
            "ratings never saw it: {reply:?}"
        );
    }
    mesh.log_line(REVIEWS_V2, " 500 FI ").await?;
    only(
        &spread(&mesh, REVIEWS_V2, RATINGS, &[], 10).await?,
        "ratings-v1.default",
        10,
    );

    delete(&mesh, "virtual-service-ratings-test-abort.yaml").await?;
    apply(&mesh, &dir, "virtual-service-ratings-test-delay.yaml").await?;
    let snapshot = mesh.control().plane.snapshot();
    let config = &snapshot
        .get(REVIEWS_V2)
        .context("reviews-v2 served")?
        .config();
    let delays: Vec<_> = config
        .faults
        .values()
        .filter_map(|f| f.delay.as_ref())
        .collect();
    assert_eq!(delays.len(), 1, "{:?}", config.faults);
    assert_eq!(delays[0].fixed_delay, std::time::Duration::from_secs(7));
    assert_eq!(delays[0].per_million, 1_000_000);
    // Calls of other users are not delayed: they answer (the harness gives up after 10 s).
    only(
        &spread(&mesh, REVIEWS_V2, RATINGS, &[], 5).await?,
        "ratings-v1.default",
        5,
    );
    Ok(())
}

/// The ingress gateway `skiff up` adds for `istio: ingressgateway`, written out.
const INGRESS_GATEWAY: &str = "\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: istio-ingressgateway
  namespace: istio-system
spec:
  address: {{ip.ingress}}
  serviceAccount: istio-ingressgateway-service-account
  labels:
    istio: ingressgateway
";

/// Ingress: Istio's `bookinfo-gateway.yaml` in place of the example's own, unchanged:
/// the gateway's port 8080 takes Bookinfo's paths to productpage, any host, and
/// answers other paths 404 `NR`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_routes_bookinfos_paths_to_productpage() -> Result<()> {
    let Some(dir) = task_files() else {
        return Ok(());
    };
    let mut files: Vec<(String, String)> = example()?
        .into_iter()
        .filter(|(n, _)| !n.contains("gateway"))
        .collect();
    for name in ["bookinfo-gateway.yaml", "destination-rule-all.yaml"] {
        files.push((name.to_owned(), task(&dir, name)?));
    }
    files.push(("ingress.yaml".into(), INGRESS_GATEWAY.into()));
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let mesh = Mesh::start(&files).await?;
    const GATEWAY: &str = "istio-ingressgateway.istio-system";
    for (path, host) in [
        ("/productpage", "127.0.0.1"),
        ("/static/img/x.png", "bookinfo.example"),
        ("/login", "anything"),
        ("/api/v1/products/0", "shop"),
    ] {
        let reply = mesh
            .get_gateway(GATEWAY, 8080, &format!("http://{host}{path}"), &[])
            .await?;
        assert_eq!(reply.status, 200, "{path}: {reply:?}");
        assert_eq!(reply.header(header::APP), PRODUCTPAGE, "{path}: {reply:?}");
        assert_eq!(reply.header(header::PATH), path, "{reply:?}");
    }
    let reply = mesh
        .get_gateway(GATEWAY, 8080, "http://127.0.0.1/elsewhere", &[])
        .await?;
    assert_eq!(reply.status, 404, "{reply:?}");
    mesh.log_line(GATEWAY, " 404 NR ").await?;
    mesh.log_line(
        GATEWAY,
        "outbound|9080||productpage.default.svc.cluster.local",
    )
    .await?;

    Ok(())
}
