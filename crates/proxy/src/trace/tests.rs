use http::{HeaderMap, HeaderValue};
use opentelemetry_proto::tonic::trace::v1::Span;

use super::context::{self, Styles};
use super::*;

const TRACE: u128 = 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736;
const PARENT: u64 = 0x00f0_67aa_0ba9_02b7;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(*k, HeaderValue::from_static(v));
    }
    h
}

#[test]
fn reads_w3c_and_both_b3_forms() {
    let w3c = context::read(&headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]))
    .unwrap();
    assert_eq!(
        (w3c.trace_id, w3c.span_id, w3c.sampled),
        (TRACE, PARENT, Some(true))
    );
    assert!(w3c.styles.w3c && !w3c.styles.b3_multi);

    let multi = context::read(&headers(&[
        ("x-b3-traceid", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-sampled", "0"),
    ]))
    .unwrap();
    assert_eq!((multi.trace_id, multi.sampled), (TRACE, Some(false)));
    assert!(multi.styles.b3_multi && !multi.styles.w3c);

    let single = context::read(&headers(&[(
        "b3",
        "a3ce929d0e0e4736-00f067aa0ba902b7-1-05e3ac9a4f6e3b90",
    )]))
    .unwrap();
    assert_eq!(single.trace_id, 0xa3ce_929d_0e0e_4736);
    assert!(single.styles.b3_single && single.styles.b3_short);
    assert_eq!(single.sampled, Some(true));

    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(bad));
        assert_eq!(context::read(&h), None, "{bad}");
    }
    assert_eq!(context::read(&HeaderMap::new()), None);
}

#[test]
fn writes_back_the_styles_that_came_with_this_span_as_parent() {
    let mut h = headers(&[
        ("x-b3-traceid", "a3ce929d0e0e4736"),
        ("x-b3-spanid", "00f067aa0ba902b7"),
        ("x-b3-sampled", "1"),
    ]);
    let styles = context::read(&h).unwrap().styles;
    context::inject(
        &mut h,
        0xa3ce_929d_0e0e_4736,
        0x1111_2222_3333_4444,
        Some(PARENT),
        styles,
    );
    assert_eq!(h["x-b3-traceid"], "a3ce929d0e0e4736");
    assert_eq!(h["x-b3-spanid"], "1111222233334444");
    assert_eq!(h["x-b3-parentspanid"], "00f067aa0ba902b7");
    assert_eq!(h["x-b3-sampled"], "1");
    assert!(h.get("traceparent").is_none(), "B3 in, B3 out only");

    let mut h = HeaderMap::new();
    context::inject(
        &mut h,
        TRACE,
        0x1111_2222_3333_4444,
        None,
        Styles::default(),
    );
    assert_eq!(
        h["traceparent"],
        "00-4bf92f3577b34da6a3ce929d0e0e4736-1111222233334444-01"
    );
    let mut h = headers(&[("b3", "4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1")]);
    let styles = context::read(&h).unwrap().styles;
    context::inject(&mut h, TRACE, 0x1111_2222_3333_4444, Some(PARENT), styles);
    assert_eq!(
        h["b3"],
        "4bf92f3577b34da6a3ce929d0e0e4736-1111222233334444-1-00f067aa0ba902b7"
    );
}

fn plan(per_10000: u32) -> Plan {
    let t = TracingConfig {
        random_sampling_percentage: Some(f64::from(per_10000) / 100.0),
        use_request_id_for_trace_sampling: true,
        enable_istio_tags: true,
        ..TracingConfig::default()
    };
    Plan::of(
        &t,
        span::SpanKind::Client,
        None,
        Arc::new(Own::of(&Node::default())),
    )
}

#[test]
fn the_draw_follows_the_percentage_and_the_request_id() {
    assert!(!plan(0).draw(None));
    assert!(plan(10_000).draw(None));
    let half = plan(5_000);
    let ids: Vec<HeaderValue> = (0..2000)
        .map(|i| HeaderValue::try_from(format!("id-{i}")).unwrap())
        .collect();
    let sampled = ids.iter().filter(|id| half.draw(Some(id))).count();
    assert!((800..1200).contains(&sampled), "{sampled} of 2000 at 50%");
    // The same id, the same decision, at every proxy.
    for id in &ids {
        assert_eq!(half.draw(Some(id)), plan(5_000).draw(Some(id)));
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    // Nothing listens there: the task is stuck connecting while spans arrive.
    let e = Exporter::start(
        &tokio::runtime::Handle::current(),
        "127.0.0.1:9",
        Resource::default(),
        4,
        Arc::new(export::Stats::default()),
    );
    for _ in 0..10 {
        e.send(Span::default());
    }
    let dropped = e.stats.dropped.get();
    assert!(
        dropped >= 5,
        "{dropped} dropped of 10 with room for 4 (+1 taken)"
    );
}

fn tracing_at(percent: f64) -> Tracing {
    let t = TracingConfig {
        provider: Some("otel".into()),
        collector: Some("127.0.0.1:9".into()),
        random_sampling_percentage: Some(percent),
        use_request_id_for_trace_sampling: true,
        enable_istio_tags: true,
        ..TracingConfig::default()
    };
    let mut telemetry = TelemetryConfig::default();
    telemetry.client.tracing = Some(t.clone());
    telemetry.server.tracing = Some(t);
    let tracing = Tracing::default();
    tracing.set(&telemetry, &Node::default());
    tracing
}

#[tokio::test]
async fn an_incoming_decision_is_kept_and_a_sampled_request_carries_this_span() {
    let tracing = tracing_at(100.0);
    // The caller said no: no span, the headers pass unchanged.
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let mut h = headers(&[("traceparent", unsampled)]);
    assert!(tracing.start(Role::Inbound, &mut h).is_none());
    assert_eq!(h["traceparent"], unsampled);

    // The caller said yes, at 0%: a child span, written into the request.
    let tracing0 = tracing_at(0.0);
    let mut h = headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]);
    let s = tracing0
        .start(Role::Inbound, &mut h)
        .expect("sampled by the caller");
    let (trace, span, parent) = s.ids();
    assert_eq!((trace, parent), (TRACE, Some(PARENT)));
    assert_eq!(h["traceparent"], context::traceparent_value(TRACE, span));

    // No context, 100%: a new trace, a traceparent, and the request id given now.
    let mut h = HeaderMap::new();
    let s = tracing.start(Role::Outbound, &mut h).expect("sampled");
    let (trace, span, parent) = s.ids();
    assert_eq!(parent, None);
    assert_eq!(h["traceparent"], context::traceparent_value(trace, span));
    assert!(h.contains_key("x-request-id"));

    // No context, 0%: nothing, nothing written.
    let mut h = HeaderMap::new();
    assert!(tracing0.start(Role::Inbound, &mut h).is_none());
    assert!(h.is_empty());

    // A side without tracing leaves everything alone.
    let off = Tracing::default();
    let mut h = headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]);
    assert!(off.start(Role::Outbound, &mut h).is_none());
    assert_eq!(h.len(), 1);
}

#[tokio::test]
async fn disabled_span_reporting_propagates_and_keeps_no_span() {
    let t = TracingConfig {
        provider: Some("otel".into()),
        collector: Some("127.0.0.1:9".into()),
        disabled: true,
        random_sampling_percentage: Some(100.0),
        use_request_id_for_trace_sampling: true,
        enable_istio_tags: true,
        ..TracingConfig::default()
    };
    let mut telemetry = TelemetryConfig::default();
    telemetry.client.tracing = Some(t);
    let tracing = Tracing::default();
    tracing.set(&telemetry, &Node::default());
    let mut h = headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )]);
    assert!(tracing.start(Role::Outbound, &mut h).is_none());
    let sent = h["traceparent"].to_str().unwrap();
    assert!(
        sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{sent}"
    );
    assert!(
        !sent.contains("00f067aa0ba902b7"),
        "this proxy's span is the parent"
    );
}
