//! skiff-xds
