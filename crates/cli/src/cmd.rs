//! One module per subcommand.

pub(crate) mod control;
pub(crate) mod proxy_status;
pub(crate) mod validate;
pub(crate) mod version;
