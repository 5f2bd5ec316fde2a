//! Telemetry rules.

use crate::telemetry::{ProviderRef, TagOperation, Telemetry};
use crate::validate::Report;
use crate::validate::security::{one_selector_type, target_ref};

pub(super) fn validate(r: &mut Report<'_>, t: &Telemetry) {
    one_selector_type(
        r,
        t.selector.as_ref(),
        t.target_ref.as_ref(),
        &t.target_refs,
    );
    if let Some(tr) = &t.target_ref {
        target_ref(r, "spec.targetRef", tr);
    }
    for (i, tr) in t.target_refs.iter().enumerate() {
        target_ref(r, &format!("spec.targetRefs[{i}]"), tr);
    }
    if t.tracing.len() > 1 {
        r.warn(
            "spec.tracing",
            "multiple tracing is not currently supported",
        );
    }
    for (i, tr) in t.tracing.iter().enumerate() {
        let p = format!("spec.tracing[{i}]");
        if tr.providers.len() > 1 {
            r.warn(
                format!("{p}.providers"),
                "multiple providers is not currently supported",
            );
        }
        providers(r, &p, &tr.providers);
        if let Some(v) = tr.random_sampling_percentage
            && !(0.0..=100.0).contains(&v)
        {
            r.error(
                format!("{p}.randomSamplingPercentage"),
                "randomSamplingPercentage must be in range [0.0, 100.0]",
            );
        }
        for (name, tag) in &tr.custom_tags {
            let tp = crate::yaml::join_key(&format!("{p}.customTags"), name);
            if name.is_empty() {
                r.error(tp.clone(), "tag name may not be empty");
            }
            let set = [
                tag.literal.is_some(),
                tag.environment.is_some(),
                tag.header.is_some(),
            ];
            match set.iter().filter(|s| **s).count() {
                0 => r.error(
                    tp.clone(),
                    "a custom tag needs one of literal, environment or header",
                ),
                1 => {}
                _ => r.error(tp.clone(), "set only one of literal, environment or header"),
            }
            if tag.literal.as_ref().is_some_and(|l| l.value.is_empty()) {
                r.error(
                    format!("{tp}.literal.value"),
                    "literal tag value may not be empty",
                );
            }
            if tag.header.as_ref().is_some_and(|h| h.name.is_empty()) {
                r.error(
                    format!("{tp}.header.name"),
                    "header tag name may not be empty",
                );
            }
            if tag.environment.as_ref().is_some_and(|e| e.name.is_empty()) {
                r.error(
                    format!("{tp}.environment.name"),
                    "environment tag name may not be empty",
                );
            }
        }
    }
    for (i, m) in t.metrics.iter().enumerate() {
        let p = format!("spec.metrics[{i}]");
        providers(r, &p, &m.providers);
        if let Some(d) = &m.reporting_interval {
            r.check(
                format!("{p}.reportingInterval"),
                crate::validate::validate_duration(d),
            );
        }
        for (j, o) in m.overrides.iter().enumerate() {
            let op = format!("{p}.overrides[{j}]");
            for (name, to) in &o.tag_overrides {
                let tp = crate::yaml::join_key(&format!("{op}.tagOverrides"), name);
                if name.is_empty() {
                    r.warn(tp.clone(), "tagOverrides name may not be empty");
                }
                match to.operation.unwrap_or(TagOperation::Upsert) {
                    TagOperation::Upsert if to.value.as_deref().unwrap_or("").is_empty() => {
                        r.error(
                            tp,
                            "tagOverrides.value must be set when operation is UPSERT",
                        );
                    }
                    TagOperation::Remove if to.value.is_some() => {
                        r.error(
                            tp,
                            "tagOverrides.value may only be set when operation is UPSERT",
                        );
                    }
                    TagOperation::Upsert => {
                        let value = to.value.as_deref().unwrap_or("");
                        match crate::cel::check_tag(value) {
                            Err(e) => r.error(format!("{tp}.value"), e),
                            Ok((_, Some(note))) => r.warn(format!("{tp}.value"), note),
                            Ok((_, None)) => {}
                        }
                    }
                    TagOperation::Remove => {}
                }
            }
            if let Some(sel) = &o.r#match {
                if sel.metric.is_some() && sel.custom_metric.is_some() {
                    r.error(
                        format!("{op}.match"),
                        "set only one of metric or customMetric",
                    );
                }
                if sel.custom_metric.as_deref() == Some("") {
                    r.error(
                        format!("{op}.match.customMetric"),
                        "customMetric may not be empty",
                    );
                }
            }
        }
    }
    for (i, l) in t.access_logging.iter().enumerate() {
        let p = format!("spec.accessLogging[{i}]");
        providers(r, &p, &l.providers);
        if let Some(f) = &l.filter {
            let expr = f.expression.as_deref().unwrap_or("");
            if expr.trim().is_empty() {
                r.error(
                    format!("{p}.filter.expression"),
                    "filter expression may not be empty",
                );
            } else if let Err(e) = crate::cel::check(expr) {
                r.error(format!("{p}.filter.expression"), e);
            }
        }
    }
}

fn providers(r: &mut Report<'_>, path: &str, providers: &[ProviderRef]) {
    for (i, p) in providers.iter().enumerate() {
        if p.name.is_empty() {
            r.error(
                format!("{path}.providers[{i}].name"),
                "providers.name may not be empty",
            );
        }
    }
}
