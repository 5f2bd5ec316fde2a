//! One module per subcommand.

pub(crate) mod sample_app;
pub(crate) mod version;
