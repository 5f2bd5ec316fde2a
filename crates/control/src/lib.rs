//! skiff-control
