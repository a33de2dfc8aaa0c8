//! Kubernetes label-selector semantics, so that a CertMerge or a namespace
//! policy selects exactly what `kubectl get -l` would show: `matchLabels` AND
//! every expression; `NotIn` and `DoesNotExist` match when the key is absent.
//!
//! The API server rejects malformed selectors on built-in objects; a CRD field
//! or a flag may still carry one, so [`check`] names the problem and
//! [`matches`] fails closed (a malformed expression matches nothing).

use super::model::{LabelExpression, LabelSelector};
use std::collections::BTreeMap;

pub const IN: &str = "In";
pub const NOT_IN: &str = "NotIn";
pub const EXISTS: &str = "Exists";
pub const DOES_NOT_EXIST: &str = "DoesNotExist";

/// Whether `labels` satisfy `selector`. An empty selector matches everything.
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && selector
            .match_expressions
            .iter()
            .all(|e| expression_matches(e, labels))
}

fn expression_matches(e: &LabelExpression, labels: &BTreeMap<String, String>) -> bool {
    if expression_problem(e).is_some() {
        return false;
    }
    let value = labels.get(&e.key);
    match e.operator.as_str() {
        IN => value.is_some_and(|v| e.values.contains(v)),
        NOT_IN => value.is_none_or(|v| !e.values.contains(v)),
        EXISTS => value.is_some(),
        DOES_NOT_EXIST => value.is_none(),
        _ => false,
    }
}

/// `Err(description)` when the selector is not one Kubernetes would accept.
pub fn check(selector: &LabelSelector) -> Result<(), String> {
    match selector
        .match_expressions
        .iter()
        .find_map(expression_problem)
    {
        Some(problem) => Err(problem),
        None => Ok(()),
    }
}

fn expression_problem(e: &LabelExpression) -> Option<String> {
    if e.key.is_empty() {
        return Some("matchExpressions: key must not be empty".to_owned());
    }
    match e.operator.as_str() {
        IN | NOT_IN if e.values.is_empty() => Some(format!(
            "matchExpressions[{}]: operator {} needs at least one value",
            e.key, e.operator
        )),
        EXISTS | DOES_NOT_EXIST if !e.values.is_empty() => Some(format!(
            "matchExpressions[{}]: operator {} takes no values",
            e.key, e.operator
        )),
        IN | NOT_IN | EXISTS | DOES_NOT_EXIST => None,
        other => Some(format!(
            "matchExpressions[{}]: unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)",
            e.key
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> LabelExpression {
        LabelExpression {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    fn sel(match_labels: &[(&str, &str)], exprs: Vec<LabelExpression>) -> LabelSelector {
        LabelSelector {
            match_labels: labels(match_labels),
            match_expressions: exprs,
        }
    }

    #[test]
    fn the_empty_selector_matches_everything() {
        assert!(matches(&LabelSelector::default(), &labels(&[])));
        assert!(matches(&LabelSelector::default(), &labels(&[("a", "b")])));
    }

    #[test]
    fn match_labels_and_expressions_must_all_hold() {
        let s = sel(&[("team", "shop")], vec![expr("tier", IN, &["web", "api"])]);
        assert!(matches(&s, &labels(&[("team", "shop"), ("tier", "web")])));
        assert!(!matches(&s, &labels(&[("team", "shop"), ("tier", "db")])));
        assert!(!matches(&s, &labels(&[("team", "blog"), ("tier", "web")])));
        assert!(!matches(&s, &labels(&[("team", "shop")])));
    }

    #[test]
    fn not_in_and_does_not_exist_match_an_absent_key() {
        let not_in = sel(&[], vec![expr("env", NOT_IN, &["prod"])]);
        assert!(matches(&not_in, &labels(&[])));
        assert!(matches(&not_in, &labels(&[("env", "dev")])));
        assert!(!matches(&not_in, &labels(&[("env", "prod")])));

        let absent = sel(&[], vec![expr("env", DOES_NOT_EXIST, &[])]);
        assert!(matches(&absent, &labels(&[])));
        assert!(!matches(&absent, &labels(&[("env", "")])));

        let exists = sel(&[], vec![expr("env", EXISTS, &[])]);
        assert!(matches(&exists, &labels(&[("env", "")])));
        assert!(!matches(&exists, &labels(&[])));
    }

    #[test]
    fn malformed_expressions_are_named_and_match_nothing() {
        for bad in [
            expr("env", IN, &[]),
            expr("env", NOT_IN, &[]),
            expr("env", EXISTS, &["x"]),
            expr("env", "in", &["x"]),
            expr("", EXISTS, &[]),
        ] {
            let s = sel(&[], vec![bad.clone()]);
            assert!(check(&s).is_err(), "{bad:?}");
            assert!(!matches(&s, &labels(&[("env", "x")])), "{bad:?}");
            assert!(!matches(&s, &labels(&[])), "{bad:?}");
        }
        let err = check(&sel(&[], vec![expr("env", "Equals", &["x"])])).unwrap_err();
        assert!(err.contains("Equals"), "{err}");
        assert!(check(&sel(&[], vec![expr("env", EXISTS, &[])])).is_ok());
    }
}
