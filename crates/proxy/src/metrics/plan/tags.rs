//! Tag values read from the request: the CEL expressions of the Telemetry API's
//! `tagOverrides[].value` that are not constants (`request.host`,
//! `request.headers['x-tenant']`, `string(response.code)`), evaluated per record on the
//! attributes the access-log filter uses, as Istio's stats filter evaluates them.
//!
//! Istio warns that such values can make a metric's series grow without bound. skiff
//! bounds them: a side keeps at most [`MAX_VALUES`] distinct combinations of its
//! evaluated values; a record that would add one more shows [`OVERFLOW`] in each
//! evaluated tag, and the proxy warns once. A value that cannot be evaluated for a
//! record (a TCP connection has no `request`, a header is absent) is [`UNKNOWN`], as
//! in Istio.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use cel::{Context, Env, Program, Value};

use crate::record::Record;

/// The value of a tag that cannot be evaluated for a record.
pub(crate) const UNKNOWN: &str = "unknown";

/// The value of every evaluated tag past [`MAX_VALUES`].
pub(crate) const OVERFLOW: &str = "overflow";

/// Distinct combinations of evaluated values one side keeps.
pub(crate) const MAX_VALUES: usize = 1000;

/// The evaluated values of one record, by expression.
pub(crate) type Values = Arc<[Box<str>]>;

/// The expressions one side evaluates, and the values seen so far.
pub(crate) struct Tags {
    sources: Vec<String>,
    programs: Vec<Program>,
    /// An expression reads request headers: records keep them.
    pub(crate) headers: bool,
    env: Arc<Env>,
    /// Each combination seen, with its id (from 1).
    seen: Mutex<HashMap<Values, u32>>,
    overflow: Values,
    warned: AtomicBool,
}

impl std::fmt::Debug for Tags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tags")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl Default for Tags {
    fn default() -> Self {
        Tags {
            sources: Vec::new(),
            programs: Vec::new(),
            headers: false,
            env: Arc::new(Env::stdlib()),
            seen: Mutex::new(HashMap::new()),
            overflow: Arc::from([]),
            warned: AtomicBool::new(false),
        }
    }
}

impl Tags {
    pub(crate) fn is_empty(&self) -> bool {
        self.programs.is_empty()
    }

    /// The index of `source`'s value, compiled once however many metrics use it.
    pub(crate) fn add(&mut self, source: &str) -> Result<usize, String> {
        if let Some(i) = self.sources.iter().position(|s| s == source) {
            return Ok(i);
        }
        let (program, _) = skiff_api::cel::check_tag(source)?;
        self.headers |= skiff_api::cel::reads_headers(&program);
        self.sources.push(source.to_owned());
        self.programs.push(program);
        self.overflow = (0..self.programs.len())
            .map(|_| Box::<str>::from(OVERFLOW))
            .collect();
        Ok(self.programs.len() - 1)
    }

    /// The values of `r`, with the id of their combination (`u32::MAX` past the cap).
    pub(crate) fn evaluate(&self, r: &Record) -> (u32, Values) {
        let mut ctx = Context::with_env(self.env.clone());
        for (name, value) in crate::access_log::activation(r) {
            ctx.add_variable_from_value(name, value);
        }
        let values: Values = self
            .programs
            .iter()
            .map(|p| match p.execute(&ctx) {
                Ok(v) => text(&v).into_boxed_str(),
                Err(_) => UNKNOWN.into(),
            })
            .collect();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((v, id)) = seen.get_key_value(&values) {
            return (*id, v.clone());
        }
        if seen.len() >= MAX_VALUES {
            drop(seen);
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    tags = ?self.sources,
                    limit = MAX_VALUES,
                    "metric tag values past the limit of distinct values show `overflow`"
                );
            }
            return (u32::MAX, self.overflow.clone());
        }
        let id = seen.len() as u32 + 1;
        seen.insert(values.clone(), id);
        (id, values)
    }
}

/// A CEL value as label text, as Envoy prints it; [`UNKNOWN`] for a list, a map or
/// null.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => (**s).clone(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        _ => UNKNOWN.to_owned(),
    }
}
