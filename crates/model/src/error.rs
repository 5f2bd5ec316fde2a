//! The errors of the model crate.

/// What can go wrong asking the model for something.
///
/// Building a mesh never fails (problems in the configuration are
/// [`crate::Diagnostic`]s); asking for a proxy that does not exist does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// No workload with a sidecar (or running a gateway) has this id.
    #[error(
        "no proxy `{id}` in the mesh: proxy ids are `<workload name>.<namespace>` of a workload \
         with a sidecar or a gateway{}",
        hint(suggestions)
    )]
    UnknownProxy {
        /// The id asked for.
        id: String,
        /// Ids of proxies with the same workload name in other namespaces, or the same
        /// namespace, that the caller may have meant.
        suggestions: Vec<String>,
    },
}

fn hint(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", suggestions.join(" or "))
    }
}
