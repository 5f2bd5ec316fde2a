use super::Timestamp;

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn known_instants() {
    assert_eq!(ts("1970-01-01T00:00:00Z").unix(), (0, 0));
    assert_eq!(ts("2024-01-01T00:00:00Z").unix(), (1_704_067_200, 0));
    assert_eq!(
        ts("2000-02-29T12:00:00.25Z").unix(),
        (951_825_600, 250_000_000)
    );
    assert_eq!(ts("1969-12-31T23:59:59Z").unix(), (-1, 0));
}

#[test]
fn offsets_name_the_same_instant() {
    assert_eq!(ts("2024-01-01T01:00:00+01:00"), ts("2024-01-01T00:00:00Z"));
    assert_eq!(ts("2023-12-31t19:00:00-05:00"), ts("2024-01-01 00:00:00z"));
}

#[test]
fn order_follows_time_not_text() {
    // As text, "2024-01-01T09…" > "2024-01-01T10…+05:00"; as instants it is older.
    assert!(ts("2024-01-01T10:00:00+05:00") < ts("2024-01-01T09:00:00Z"));
    assert!(ts("2024-01-01T00:00:00.1Z") > ts("2024-01-01T00:00:00Z"));
}

#[test]
fn bad_text_is_refused() {
    for bad in [
        "2024-01-01",
        "2024-13-01T00:00:00Z",
        "2023-02-29T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:00",
        "2024-01-01T00:00:00+0100",
        "2024-01-01T00:00:00.Z",
        "yesterday at noon, UTC",
    ] {
        assert!(Timestamp::parse(bad).is_err(), "{bad} accepted");
    }
}
