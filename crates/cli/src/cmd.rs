//! One module per subcommand.

pub(crate) mod validate;
pub(crate) mod version;
