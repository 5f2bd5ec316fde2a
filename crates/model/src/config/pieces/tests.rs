use super::*;
use crate::config::{ProxyConfig, ProxyParts};

fn cluster(name: &str, endpoints: usize) -> Cluster {
    let config: ProxyConfig = serde_json::from_value(serde_json::json!({
        "node": {"id": "a.prod", "name": "a", "namespace": "prod", "kind": "sidecar",
                 "address": null, "labels": {}, "serviceAccount": "default", "spiffeId": ""},
        "outbound": [], "inbound": [], "gateway": [],
        "clusters": [{
            "name": name, "service": "s.prod.svc.cluster.local", "port": 80,
            "protocol": "HTTP", "lb": "ROUND_ROBIN", "connectTimeout": 10000,
            "endpoints": (0..endpoints).map(|i| serde_json::json!({
                "address": format!("10.0.0.{}:8080", i + 1), "workload": format!("w{i}.prod"),
                "weight": 1
            })).collect::<Vec<_>>()
        }]
    }))
    .expect("a valid config");
    ProxyParts::from(config).shared.clusters[0].clone()
}

#[test]
fn endpoints_are_a_piece_of_their_own() {
    let mut shared = SharedConfig {
        clusters: vec![cluster("outbound|80||s.prod.svc.cluster.local", 2)],
        ..SharedConfig::default()
    };
    shared
        .workload_labels
        .insert("w0.prod".into(), [("app".into(), "s".into())].into());
    let before = shared.pieces();
    let names: Vec<&str> = before.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cluster/outbound|80||s.prod.svc.cluster.local",
            "endpoints/outbound|80||s.prod.svc.cluster.local",
            "mesh"
        ]
    );
    let SharedPiece::Endpoints(e) = &before[1].1 else {
        panic!("not endpoints: {:?}", before[1].1)
    };
    assert_eq!(
        e.workload_labels.len(),
        1,
        "the labels travel with the endpoints"
    );
    // One more endpoint changes that piece only.
    shared.clusters[0] = cluster("outbound|80||s.prod.svc.cluster.local", 3);
    let after = shared.pieces();
    let changed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.as_str())
        .collect();
    assert_eq!(changed, ["endpoints/outbound|80||s.prod.svc.cluster.local"]);
    let joined = SharedConfig::from_pieces(after.iter().map(|(n, p)| (n.as_str(), p))).unwrap();
    assert_eq!(joined, shared);
}

#[test]
fn a_piece_under_another_name_is_refused() {
    let piece = SharedPiece::Cluster(Box::new(cluster(
        "outbound|80||s.prod.svc.cluster.local",
        0,
    )));
    let err =
        SharedConfig::from_pieces([("cluster/outbound|81||s.prod.svc.cluster.local", &piece)])
            .unwrap_err();
    assert!(matches!(err, PieceError::Misnamed { .. }), "{err}");
    let mesh = SharedPiece::Mesh(MeshPiece::default());
    assert!(SharedConfig::from_pieces([("endpoints/x", &mesh)]).is_err());
}
