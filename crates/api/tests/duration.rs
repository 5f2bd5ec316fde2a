//! Durations follow Go's `time.ParseDuration`, as Istio's YAML decoder does.

use std::time::Duration as Std;

use proptest::prelude::*;
use skiff_api::Duration;

#[test]
fn accepted_forms() {
    for (text, want) in [
        ("30s", Std::from_secs(30)),
        ("1.5s", Std::from_millis(1500)),
        ("100ms", Std::from_millis(100)),
        ("1h", Std::from_secs(3600)),
        ("1m30s", Std::from_secs(90)),
        ("5m", Std::from_secs(300)),
        ("1h2m3s4ms", Std::from_millis(3_723_004)),
        ("250us", Std::from_micros(250)),
        ("250µs", Std::from_micros(250)),
        ("7ns", Std::from_nanos(7)),
        (".5s", Std::from_millis(500)),
        ("2.s", Std::from_secs(2)),
        ("0", Std::ZERO),
        ("0s", Std::ZERO),
        ("+3s", Std::from_secs(3)),
        ("7200s", Std::from_secs(7200)),
    ] {
        let d = Duration::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(d.value(), want, "{text}");
        assert_eq!(d.as_str(), text);
    }
}

#[test]
fn refused_forms() {
    for text in [
        "",
        "s",
        "30",
        "1.5",
        "5x",
        "1d",
        "-1s",
        "1 s",
        "1s ",
        ".s",
        "1h-2m",
        "9999999999h",
    ] {
        let err = Duration::parse(text).expect_err(text);
        assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
    }
}

proptest! {
    #[test]
    fn components_add_up(h in 0u64..100, m in 0u64..100, s in 0u64..100, ms in 0u64..1000) {
        let text = format!("{h}h{m}m{s}s{ms}ms");
        let d = Duration::parse(&text).unwrap();
        prop_assert_eq!(d.value(), Std::from_millis(((h * 60 + m) * 60 + s) * 1000 + ms));
    }

    #[test]
    fn fractions_of_seconds(whole in 0u64..10_000, frac in 0u32..1_000_000_000) {
        let text = format!("{whole}.{frac:09}s");
        let d = Duration::parse(&text).unwrap();
        prop_assert_eq!(d.value(), Std::new(whole, frac));
    }

    #[test]
    fn display_and_serde_keep_the_text(h in 0u64..5, s in 0u64..60) {
        let text = format!("{h}h{s}s");
        let d = Duration::parse(&text).unwrap();
        prop_assert_eq!(d.to_string(), text.clone());
        let json = serde_json::to_string(&d).unwrap();
        prop_assert_eq!(json, format!("\"{text}\""));
    }
}
