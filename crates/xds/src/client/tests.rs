use super::*;
use crate::PushSnapshot;

fn worker() -> (Worker, watch::Receiver<ClientStatus>) {
    let (status_tx, status) = watch::channel(ClientStatus::default());
    let plain: ChannelFactory =
        Arc::new(|endpoint: Endpoint| Box::pin(async move { endpoint.connect().await }));
    let worker = Worker {
        endpoint: Endpoint::from_static("http://127.0.0.1:1"),
        channel: plain,
        address: "http://127.0.0.1:1".into(),
        node: NodeInfo::new("a.prod"),
        options: ClientOptions::default(),
        status: status_tx,
        version: None,
        own: None,
        pieces: Arc::new(Pieces::new()),
        digest: 0,
        subscribed: Default::default(),
    };
    (worker, status)
}

/// The response a fresh proxy gets for `config`.
fn response(config: ProxyConfig, nonce: &str) -> DiscoveryResponse {
    let snapshot = PushSnapshot::new(1, [config]);
    let entry = snapshot.get("a.prod").expect("the proxy");
    let mut resources = vec![Resource {
        name: "a.prod".into(),
        version: entry.own_version.clone(),
        body: entry.own_body.clone(),
    }];
    resources.extend(entry.shared.pieces.iter().map(|p| Resource {
        name: p.name.clone(),
        version: p.version.clone(),
        body: p.body.clone(),
    }));
    DiscoveryResponse {
        type_url: PROXY_CONFIG_TYPE_URL.into(),
        version_info: entry.version.clone(),
        nonce: nonce.into(),
        resources,
        removed_resources: Vec::new(),
        more: false,
    }
}

fn config() -> ProxyConfig {
    let mut c = ProxyConfig::default();
    c.node.id = "a.prod".into();
    for name in ["outbound|80||x", "outbound|80||y"] {
        c.missing_clusters
            .insert(name.into(), "no such host".into());
    }
    c
}

#[test]
fn a_piece_that_does_not_decode_is_refused_alone() {
    let (mut worker, status) = worker();
    let mut good = response(config(), "1");
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let mut handler = move |update: ConfigUpdate| {
        seen_tx.send(update.config()).expect("the test listens");
        Ok(())
    };
    // The cluster y piece arrives broken.
    let broken = "cluster/outbound|80||y";
    let y = good
        .resources
        .iter_mut()
        .find(|r| r.name == broken)
        .unwrap();
    let intact = std::mem::replace(&mut y.body, bytes::Bytes::from_static(b"{not json"));
    let answer = worker.on_response(&mut handler, good.clone());
    assert_eq!(answer.rejected_resources, [broken]);
    let detail = answer.error_detail.expect("a NACK");
    assert!(detail.message.contains(broken), "{}", detail.message);
    assert!(
        answer
            .initial_resource_versions
            .contains_key("cluster/outbound|80||x")
    );
    assert!(!answer.initial_resource_versions.contains_key(broken));
    // The rest was applied: the proxy runs x but not y.
    let applied = seen.try_recv().expect("the handler saw the rest");
    assert!(applied.missing_clusters.contains_key("outbound|80||x"));
    assert!(!applied.missing_clusters.contains_key(broken));
    assert_ne!(answer.version_info, good.version_info);
    assert!(status.borrow().last_nack.is_some());

    // The piece again, intact: now the proxy runs what the server holds.
    let fixed = DiscoveryResponse {
        nonce: "2".into(),
        resources: vec![Resource {
            body: intact,
            ..good
                .resources
                .iter()
                .find(|r| r.name == broken)
                .unwrap()
                .clone()
        }],
        ..good.clone()
    };
    let answer = worker.on_response(&mut handler, fixed);
    assert!(answer.error_detail.is_none());
    assert_eq!(answer.version_info, good.version_info);
    assert_eq!(seen.try_recv().expect("applied"), config());
}

#[test]
fn a_config_the_handler_refuses_is_undone_whole() {
    let (mut worker, _status) = worker();
    let mut handler = |_: ConfigUpdate| Ok(());
    let first = response(config(), "1");
    let answer = worker.on_response(&mut handler, first.clone());
    assert!(answer.error_detail.is_none());
    let held = worker.holds();

    let mut next = config();
    next.missing_clusters.remove("outbound|80||y");
    next.missing_clusters
        .insert("outbound|80||z".into(), "no such host".into());
    let mut refuse = |_: ConfigUpdate| Err("z is not welcome".to_owned());
    let mut delta = response(next, "2");
    delta.resources.retain(|r| r.name.ends_with("||z"));
    delta.removed_resources = vec!["cluster/outbound|80||y".into()];
    let answer = worker.on_response(&mut refuse, delta);
    assert_eq!(
        answer.rejected_resources,
        ["cluster/outbound|80||z", "cluster/outbound|80||y"]
    );
    assert_eq!(worker.holds(), held, "everything is as before");
    assert_eq!(answer.version_info, first.version_info);
}
