//! skiff-proxy
