use super::*;

fn hop(
    proxy: &str,
    direction: &str,
    id: &str,
    status: u16,
    flag: &str,
    details: Option<&str>,
    start: u64,
) -> Hop {
    Hop {
        proxy: proxy.into(),
        failure: serde_json::json!({
            "requestId": id, "direction": direction, "status": status, "flag": flag,
            "details": details, "startMs": start, "attempts": 1,
        }),
    }
}

#[test]
fn the_hop_that_raised_a_flag_or_said_why_is_the_one_that_failed() {
    let all = vec![
        hop("frontend.prod", "outbound", "r1", 403, "-", None, 10),
        hop(
            "backend.prod",
            "inbound",
            "r1",
            403,
            "-",
            Some("rbac_access_denied_matched_policy[prod/deny]: no"),
            11,
        ),
        hop("frontend.prod", "outbound", "r2", 503, "UH", None, 20),
    ];
    let hops = select(all.clone(), Some("r1")).unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(hops.last().unwrap().proxy, "backend.prod");

    let last = select(all.clone(), None).unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].field("flag"), Some("UH"));

    let err = select(all, Some("nope")).unwrap_err().to_string();
    assert!(err.contains("\"nope\""), "{err}");
}

#[test]
fn an_inbound_flag_wins_over_the_outbound_status_it_caused() {
    let all = vec![
        hop("backend.prod", "inbound", "r", 503, "UF", None, 11),
        hop("frontend.prod", "outbound", "r", 503, "-", None, 10),
    ];
    let hops = select(all, Some("r")).unwrap();
    assert_eq!(hops.last().unwrap().field("flag"), Some("UF"));
}
