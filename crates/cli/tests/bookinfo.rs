//! Smoke test of `skiff up examples/bookinfo` as real processes: through the ingress
//! gateway (Gateway port 8080, served on 16080), productpage calls details and
//! reviews, and reviews v2/v3 call ratings, each app showing the answers it got.
//! Then Istio's own files, unchanged (its `bookinfo-gateway.yaml` in place of the
//! example's, and the task files) (from `../shared/corpus` or
//! `$SKIFF_CORPUS`; without them the rest is skipped with a note, except under CI,
//! where a missing corpus is a failure): `end-user: jason` sent to the gateway reaches
//! reviews v2 (the header is propagated hop by hop), the ratings abort fails jason's
//! ratings call, and the request-timeouts task cuts productpage's call to reviews at
//! 0.5 s.

#[path = "support/mesh.rs"]
mod mesh;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mesh::{Mesh, client, get_path};

fn corpus() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SKIFF_CORPUS") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/corpus"))
        .find(|c| c.join("istio").is_dir())
}

/// GET `path` through the gateway with `headers`: status and body.
async fn page(gateway: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use http_body_util::{BodyExt as _, Empty};
    let mut request = hyper::Request::get(format!("http://{gateway}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client()
        .request(request.body(Empty::<bytes::Bytes>::new()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Which reviews version answered, from productpage's page.
fn reviews_version(body: &str) -> Option<&str> {
    ["reviews-v1", "reviews-v2", "reviews-v3"]
        .into_iter()
        .find(|v| body.contains(&format!("Hostname: {v}")))
}

/// Istio's request-timeouts task (its YAML, as the task page shows it): reviews to v2,
/// a 2 s delay on every call to ratings, then a 0.5 s timeout on reviews.
const TIMEOUT_TASK: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - fault:
      delay:
        percentage:
          value: 100
        fixedDelay: 2s
    route:
    - destination:
        host: ratings
        subset: v1
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v2
    timeout: 0.5s
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookinfo_runs_and_istios_tasks_apply_unchanged() {
    let net = 31;
    let mesh = Mesh::start_example("bookinfo", net, &[], &[]);
    let gateway: SocketAddr = format!("127.0.{net}.1:16080").parse().unwrap();
    let summary = mesh.log();
    assert!(
        summary.contains(&format!("http://127.0.{net}.1:16080/ (Gateway port 8080)")),
        "{summary}"
    );

    // Before any task: every version of reviews serves, v2 and v3 with ratings.
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (status, body) = page(gateway, "/productpage", &[]).await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("Hostname: productpage-v1\n"), "{body}");
        assert!(body.contains("Target: http://details:9080/details/0\n  Hello, world!\n  Version: v1\n  Hostname: details-v1\n"), "{body}");
        let version = reviews_version(&body).unwrap_or_else(|| panic!("reviews answered: {body}"));
        assert_eq!(
            body.contains("Hostname: ratings-v1"),
            version != "reviews-v1",
            "only reviews v2 and v3 call ratings: {body}"
        );
        seen.insert(version.to_owned());
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "all three reviews versions answer: {seen:?}");
    // Only Bookinfo's paths are routed by the gateway.
    let (status, _) = page(gateway, "/elsewhere", &[]).await;
    assert_eq!(status, 404);

    let Some(corpus) = corpus() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "Istio's Bookinfo task files (shared/corpus) are missing; set SKIFF_CORPUS"
        );
        eprintln!(
            "skipped the task part: no shared/corpus next to the repository (set SKIFF_CORPUS)"
        );
        return;
    };
    let tasks = corpus.join("istio/samples/bookinfo/networking");
    // Istio's own bookinfo-gateway.yaml in place of the example's: the same ingress.
    std::fs::copy(
        tasks.join("bookinfo-gateway.yaml"),
        mesh.dir.path().join("50-bookinfo-gateway.yaml"),
    )
    .unwrap();
    for file in [
        "destination-rule-all.yaml",
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
    ] {
        std::fs::copy(tasks.join(file), mesh.dir.path().join(file)).unwrap();
    }
    // Once the files are served: jason always reaches v2 (and, through it, ratings),
    // everyone else v1. Waits for a run of 10 such pairs in a row.
    let mut run = 0;
    let mut tries = 0;
    while run < 10 {
        tries += 1;
        assert!(
            tries < 600,
            "jason never settled on reviews v2: {}",
            mesh.log()
        );
        let (status, jason) = page(gateway, "/productpage", &[("end-user", "jason")]).await;
        let (_, anyone) = page(gateway, "/productpage", &[]).await;
        let settled = status == 200
            && reviews_version(&jason) == Some("reviews-v2")
            && jason.contains("Hostname: ratings-v1")
            && reviews_version(&anyone) == Some("reviews-v1");
        run = if settled { run + 1 } else { 0 };
        if !settled {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Fault injection: jason's calls from reviews v2 to ratings are aborted with 500
    // at reviews' sidecar; the failure shows, nested, in the page.
    std::fs::copy(
        tasks.join("virtual-service-ratings-test-abort.yaml"),
        mesh.dir
            .path()
            .join("virtual-service-ratings-test-abort.yaml"),
    )
    .unwrap();
    let mut tries = 0;
    let body = loop {
        let (status, body) = page(gateway, "/productpage", &[("end-user", "jason")]).await;
        if status == 502 {
            break body;
        }
        tries += 1;
        assert!(tries < 600, "the abort never applied: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body.contains("Hostname: reviews-v2"), "{body}");
    assert!(
        body.contains("Error: http://ratings:9080/ratings/0 via proxy")
            && body.contains("answered 500 Internal Server Error"),
        "{body}"
    );
    assert!(!body.contains("Hostname: ratings-v1"), "{body}");
    let (status, body) = page(gateway, "/productpage", &[]).await;
    assert_eq!(status, 200, "others are not affected: {body}");
    std::fs::remove_file(
        mesh.dir
            .path()
            .join("virtual-service-ratings-test-abort.yaml"),
    )
    .unwrap();

    // Request timeouts: the task's files replace the routing ones.
    for file in [
        "virtual-service-all-v1.yaml",
        "virtual-service-reviews-test-v2.yaml",
    ] {
        std::fs::remove_file(mesh.dir.path().join(file)).unwrap();
    }
    let others = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: details\nspec:\n  hosts:\n  - details\n  http:\n  - route:\n    - destination:\n        host: details\n        subset: v1\n";
    std::fs::write(mesh.dir.path().join("details.yaml"), others).unwrap();
    std::fs::write(mesh.dir.path().join("timeouts.yaml"), TIMEOUT_TASK).unwrap();
    let mut waited = 0;
    let (status, body) = loop {
        let (status, body) = page(gateway, "/productpage", &[]).await;
        if status == 502 && body.contains("answered 504 Gateway Timeout") {
            break (status, body);
        }
        waited += 1;
        assert!(
            waited < 60,
            "the timeout never applied: {body}\n{}",
            mesh.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains("Hostname: details-v1"),
        "details still answers: {body}"
    );
    assert!(
        body.contains("Target: http://reviews:9080/reviews/0\n  Error: http://reviews:9080/reviews/0 via proxy"),
        "{body}"
    );
    let (_, configz) = get_path(mesh.control_debug(), "/debug/configz")
        .await
        .unwrap();
    assert!(configz.contains("\"ok\": true"), "{configz}");
}
