use std::collections::BTreeMap;

use prometheus_client::registry::Registry;

use super::Flags;
use super::histogram::Histogram;
use super::peer::{Service, Workload, decode_exchange};
use crate::ResponseFlag;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).into(), (*v).into()))
        .collect()
}

#[test]
fn workload_labels_follow_istio_fallbacks() {
    let w = Workload::from_labels(
        "reviews-v2",
        "prod",
        None,
        &labels(&[("app", "reviews"), ("version", "v2")]),
    );
    assert_eq!(&*w.app, "reviews");
    assert_eq!(&*w.version, "v2");
    assert_eq!(&*w.canonical_service, "reviews");
    assert_eq!(&*w.canonical_revision, "v2");
    assert_eq!(&*w.principal, "unknown");
    assert_eq!(&*w.cluster, "Kubernetes");

    let w = Workload::from_labels(
        "db",
        "prod",
        Some("spiffe://cluster.local/ns/prod/sa/db"),
        &labels(&[
            ("app", "x"),
            ("service.istio.io/canonical-name", "database"),
            ("app.kubernetes.io/version", "7"),
        ]),
    );
    assert_eq!(&*w.canonical_service, "database");
    assert_eq!(&*w.canonical_revision, "7");
    assert_eq!(&*w.version, "unknown");
    assert_eq!(&*w.principal, "spiffe://cluster.local/ns/prod/sa/db");

    let bare = Workload::from_labels("job", "batch", None, &BTreeMap::new());
    assert_eq!(&*bare.app, "unknown");
    assert_eq!(&*bare.canonical_service, "job");
    assert_eq!(&*bare.canonical_revision, "latest");
}

#[test]
fn exchange_round_trips_and_skips_what_it_does_not_know() {
    let w = Workload::from_labels("frontend", "prod", None, &labels(&[("app", "frontend")]));
    let ext = w.encode_exchange();
    // The header parser accepts it as well-formed extensions.
    let header = crate::transport_header::TransportHeader { target_port: 8080 }.encode_with(&ext);
    assert!(matches!(
        crate::transport_header::parse(&header),
        Ok(crate::transport_header::Parsed::Complete(_, n)) if n == header.len()
    ));
    let got = decode_exchange(&ext, Some("spiffe://cluster.local/ns/prod/sa/frontend")).unwrap();
    assert_eq!(&*got.name, "frontend");
    assert_eq!(&*got.namespace, "prod");
    assert_eq!(&*got.app, "frontend");
    assert_eq!(
        &*got.version, "unknown",
        "left out by the sender, unknown here"
    );
    assert_eq!(&*got.canonical_service, "frontend");
    assert_eq!(
        &*got.principal,
        "spiffe://cluster.local/ns/prod/sa/frontend"
    );

    // A type from a later version, then a truncated TLV: known fields still count.
    let mut ext = vec![200, 2, b'x', b'y'];
    ext.extend_from_slice(&[1, 3, b'a', b'b', b'c', 2, 9, b'p']);
    let got = decode_exchange(&ext, None).unwrap();
    assert_eq!(&*got.name, "abc");
    assert_eq!(&*got.namespace, "unknown");
    assert!(decode_exchange(&[], None).is_none());
    assert!(decode_exchange(&[9, 1, b'z'], None).is_none());
}

#[test]
fn exchange_stays_within_the_extension_limit() {
    let long = "n".repeat(255);
    let w = Workload::from_fields([&long, &long, &long, &long, &long, &long, &long], None);
    let ext = w.encode_exchange();
    assert!(ext.len() <= crate::transport_header::MAX_EXT_LEN);
    assert_eq!(ext.len(), 3 * 257, "whole fields only");
}

#[test]
fn services_from_hosts_and_clusters() {
    let s = Service::from_cluster("outbound|80|v1|reviews.prod.svc.cluster.local");
    assert_eq!(
        (&*s.host, &*s.name, &*s.namespace),
        ("reviews.prod.svc.cluster.local", "reviews", "prod")
    );
    let s = Service::from_host("api.example.com");
    assert_eq!(
        (&*s.host, &*s.name, &*s.namespace),
        ("api.example.com", "api.example.com", "unknown")
    );
    let s = Service::from_cluster("PassthroughCluster");
    assert_eq!(&*s.name, "PassthroughCluster");
}

#[test]
fn flags_as_envoy_joins_them() {
    assert_eq!(Flags(ResponseFlag::None, false).text(), "-");
    assert_eq!(
        Flags(ResponseFlag::UpstreamConnectFailure, true).text(),
        "UF,URX"
    );
    assert_eq!(Flags(ResponseFlag::None, true).text(), "URX");
    assert_ne!(
        Flags(ResponseFlag::UpstreamConnectFailure, true).code(),
        Flags(ResponseFlag::UpstreamConnectFailure, false).code()
    );
    assert_ne!(
        Flags(ResponseFlag::NoRoute, false).code(),
        Flags(ResponseFlag::NoHealthyUpstream, false).code()
    );
}

#[test]
fn histogram_buckets_are_inclusive_upper_bounds() {
    let mut registry = Registry::default();
    let h = Histogram::new(1000);
    registry.register("d", "d", h.clone());
    h.observe(500); // 0.5 ms: in le=0.5
    h.observe(501); // just over: le=1
    h.observe(4_000_000_000); // over an hour: +Inf only
    assert_eq!(h.count(), 3);
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
    assert!(out.contains("d_bucket{le=\"0.5\"} 1\n"), "{out}");
    assert!(out.contains("d_bucket{le=\"1\"} 2\n"), "{out}");
    assert!(out.contains("d_bucket{le=\"3.6e+06\"} 2\n"), "{out}");
    assert!(out.contains("d_bucket{le=\"+Inf\"} 3\n"), "{out}");
    assert!(out.contains("d_count 3\n"), "{out}");
    assert!(out.contains("d_sum 4000001.001\n"), "{out}");
}

#[test]
fn process_stat_is_parsed_past_a_command_with_spaces() {
    let p = super::process::Process::default();
    let stat = "42 (my proc) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 123456789 2000 18446744073709551615";
    let s = p.parse_stat(stat).unwrap();
    assert_eq!(s.cpu_seconds, 3.0);
    assert_eq!(s.start_seconds, 10.0);
    assert_eq!(s.virtual_bytes, 123456789.0);
    assert_eq!(s.resident_bytes, 2000.0 * 4096.0);
}

#[test]
fn cache_keys_tell_protocols_and_policies_apart() {
    use super::{Edge, Reporter};
    let edge = |protocol, security| Edge {
        reporter: Reporter::Source,
        source: Workload::unknown(),
        destination: Workload::unknown(),
        service: Service::unknown(),
        protocol,
        security,
    };
    let a = edge("http", "unknown");
    let mut b = a.clone();
    b.protocol = "grpc";
    assert_ne!(a.ids(), b.ids(), "http and grpc are other series");
    let mut c = a.clone();
    c.security = "none";
    assert_ne!(a.ids(), c.ids());
    let mut d = a.clone();
    d.reporter = Reporter::Destination;
    assert_ne!(a.ids(), d.ids());
}

#[test]
fn telemetry_plans_drop_and_set_labels_and_merge_series() {
    use super::plan::{Pairs, Planned, Plans};
    use skiff_model::config::{MetricOverride, TagChange, TelemetryConfig};
    use std::borrow::Cow;

    #[derive(Debug, Clone)]
    struct L(&'static str, &'static str);
    impl Pairs for L {
        fn pairs(&self) -> Vec<(&'static str, Cow<'_, str>)> {
            vec![("a", Cow::Borrowed(self.0)), ("b", Cow::Borrowed(self.1))]
        }
    }
    let mut t = TelemetryConfig::default();
    t.server.metrics.overrides = vec![MetricOverride {
        metric: "REQUEST_COUNT".into(),
        disabled: false,
        tags: vec![
            TagChange {
                name: "b".into(),
                value: None,
            },
            TagChange {
                name: "c".into(),
                value: Some("'fixed'".into()),
            },
        ],
    }];
    t.client.metrics.overrides = vec![MetricOverride {
        metric: "REQUEST_DURATION".into(),
        disabled: true,
        tags: vec![],
    }];
    let plans = Plans::of(&t);
    assert!(plans.made_from(&t));
    assert!(
        plans.client.duration.is_none(),
        "disabled on the client side"
    );
    assert!(plans.client.requests.is_some() && plans.server.duration.is_some());
    let plan = plans.server.requests.clone().unwrap();
    let one = Planned {
        labels: L("x", "1"),
        plan: plan.clone(),
        values: None,
    };
    let two = Planned {
        labels: L("x", "2"),
        plan,
        values: None,
    };
    // `b` is gone, so the two are one series.
    assert_eq!(one, two);
    let family: prometheus_client::metrics::family::Family<
        Planned<L>,
        prometheus_client::metrics::counter::Counter,
    > = Default::default();
    family.get_or_create(&one).inc();
    family.get_or_create(&two).inc();
    let mut registry = Registry::default();
    registry.register("t", "test", family);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    assert!(text.contains("t_total{a=\"x\",c=\"fixed\"} 2"), "{text}");
}

#[test]
fn istio_build_names_the_component_and_its_version() {
    let mut registry = Registry::default();
    let _m = super::Metrics::register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let want = format!(
        "istio_build{{component=\"proxy\",tag=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.lines().any(|l| l == want), "{text}");
}

#[test]
fn evaluated_tags_read_each_record_and_are_bounded() {
    use super::plan::tags::{MAX_VALUES, OVERFLOW, Tags};
    use crate::access_log::{AccessLog, AccessLogTarget};
    use crate::app::ProxyInputs;
    use crate::conn::{Conn, Role};
    use crate::record::Record;
    use hyper_util::rt::TokioExecutor;
    use hyper_util::server::conn::auto;

    let log = AccessLog::new(AccessLogTarget::Memory(Default::default()));
    let inputs = ProxyInputs::new(
        log,
        auto::Builder::new(TokioExecutor::new()),
        None,
        crate::Limits::default(),
    );
    let (_trigger, drain) = crate::drain::channel();
    let addr = "127.0.0.1:1".parse().unwrap();
    let conn = Conn::accepted(inputs, Role::Outbound, addr, addr, drain);

    let mut tags = Tags::default();
    let host = tags.add("request.host").unwrap();
    let code = tags.add("string(response.code)").unwrap();
    let state = tags.add("istio_operationId").unwrap();
    assert_eq!(tags.add("request.host").unwrap(), host, "compiled once");
    assert!(!tags.headers);
    let evaluate = |host: &str| {
        let req = http::Request::get(format!("http://{host}/"))
            .body(())
            .unwrap();
        let mut p = Record::http(&conn, &req);
        p.respond(503, ResponseFlag::NoHealthyUpstream);
        tags.evaluate(p.record().unwrap())
    };
    let (id, v) = evaluate("backend");
    assert_eq!(
        (&*v[host], &*v[code], &*v[state]),
        ("backend", "503", "unknown")
    );
    assert_eq!(
        evaluate("backend").0,
        id,
        "the same values are the same series"
    );
    assert_ne!(evaluate("other").0, id);
    // A TCP connection has no request: its values are unknown.
    let tcp = Record::tcp(&conn);
    assert!(tags.evaluate(&tcp).1.iter().all(|v| &**v == "unknown"));
    // Bounded: past the limit, new values show `overflow`; seen ones keep theirs.
    for i in 0..MAX_VALUES {
        evaluate(&format!("h{i}"));
    }
    let (id, v) = evaluate("one-too-many");
    assert_eq!(id, u32::MAX);
    assert!(v.iter().all(|v| &**v == OVERFLOW), "{v:?}");
    assert_eq!(&*evaluate("backend").1[host], "backend");
}
