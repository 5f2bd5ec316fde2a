use std::path::PathBuf;

use notify::event::{CreateKind, DataChange, MetadataKind};

use super::*;

fn event(kind: EventKind, path: &str) -> notify::Event {
    notify::Event::new(kind).add_path(PathBuf::from(path))
}

#[test]
fn reads_and_metadata_do_not_trigger_reloads() {
    let open = EventKind::Access(AccessKind::Open(AccessMode::Any));
    assert!(!relevant(&event(open, "/c/a.yaml")));
    let read_close = EventKind::Access(AccessKind::Close(AccessMode::Read));
    assert!(!relevant(&event(read_close, "/c/a.yaml")));
    let attrib = EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any));
    assert!(!relevant(&event(attrib, "/c/a.yaml")));
}

#[test]
fn writes_to_yaml_and_directory_changes_trigger_reloads() {
    let write_close = EventKind::Access(AccessKind::Close(AccessMode::Write));
    assert!(relevant(&event(write_close, "/c/a.yaml")));
    let modify = EventKind::Modify(ModifyKind::Data(DataChange::Any));
    assert!(relevant(&event(modify, "/c/sub/b.yml")));
    let create = EventKind::Create(CreateKind::Folder);
    assert!(relevant(&event(create, "/c/sub")));
}

#[test]
fn editor_droppings_are_ignored() {
    let modify = EventKind::Modify(ModifyKind::Data(DataChange::Any));
    assert!(!relevant(&event(modify, "/c/.a.yaml.swp")));
    assert!(!relevant(&event(modify, "/c/a.yaml~")));
    assert!(!relevant(&event(modify, "/c/notes.txt")));
}

fn burst_channel() -> (
    mpsc::UnboundedSender<tokio::time::Instant>,
    mpsc::UnboundedReceiver<tokio::time::Instant>,
) {
    mpsc::unbounded_channel()
}

#[tokio::test(start_paused = true)]
async fn a_burst_reloads_once_after_the_quiet_time() {
    let (tx, mut rx) = burst_channel();
    let start = tokio::time::Instant::now();
    let sender = tokio::spawn(async move {
        for _ in 0..5 {
            tx.send(tokio::time::Instant::now()).unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        // Keep the channel open past the burst.
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(tx);
    });
    let seen = next_burst(&mut rx, Debounce::DEFAULT).await.unwrap();
    assert_eq!(seen, start, "the burst is dated from its first event");
    // Last event at 240 ms, then 100 ms of quiet.
    assert_eq!(start.elapsed(), Duration::from_millis(340));
    // Nothing else was pending: the next burst waits for the sender.
    assert!(rx.try_recv().is_err());
    sender.abort();
}

#[tokio::test(start_paused = true)]
async fn a_directory_that_never_goes_quiet_reloads_at_the_maximum() {
    let (tx, mut rx) = burst_channel();
    let start = tokio::time::Instant::now();
    let sender = tokio::spawn(async move {
        loop {
            if tx.send(tokio::time::Instant::now()).is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let debounce = Debounce {
        after: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    let seen = next_burst(&mut rx, debounce).await.unwrap();
    assert_eq!(seen, start);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2100),
        "reloaded after {waited:?}, not at the 2 s maximum"
    );
    // The next burst starts with the events after the cut and is cut again.
    let second = next_burst(&mut rx, debounce).await.unwrap();
    assert!(second >= start + Duration::from_secs(2));
    assert!(start.elapsed() < Duration::from_millis(4200));
    sender.abort();
}

#[tokio::test(start_paused = true)]
async fn a_closed_source_ends_after_its_last_burst() {
    let (tx, mut rx) = burst_channel();
    tx.send(tokio::time::Instant::now()).unwrap();
    drop(tx);
    assert!(next_burst(&mut rx, Debounce::DEFAULT).await.is_some());
    assert!(next_burst(&mut rx, Debounce::DEFAULT).await.is_none());
}
