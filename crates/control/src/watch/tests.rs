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
