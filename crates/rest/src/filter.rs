//! Incus's `filter` query parameter (`api_filtering`): `name eq v1 and status ne Stopped`.
//!
//! How a filter is read and applied:
//! 1. The text is split into words; a value may be quoted (`"my value"`) to hold spaces.
//! 2. Words form clauses `[not] FIELD OPERATOR VALUE`, joined by `and` or `or`. Operators are
//!    `eq` and `ne`, compared as text (numbers and booleans by their JSON text).
//! 3. A field is a dotted path into the object's JSON form (`status`, `config.limits.cpu`,
//!    `expanded_config.user.role`); a map key may itself contain dots, so the longest key that
//!    matches is taken. A missing field matches `eq ""`.
//! 4. Clauses are applied left to right, as Incus does: each `and`/`or` combines the result so
//!    far with the next clause.

use serde_json::Value;

use crate::error::ApiError;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    /// How this clause joins the result of the ones before it (`and` for the first).
    and: bool,
    not: bool,
    field: String,
    equal: bool,
    value: String,
}

impl Filter {
    /// Parses a filter; `None` for an empty one (everything matches).
    pub fn parse(text: &str) -> Result<Option<Self>, ApiError> {
        let words = split_words(text)?;
        if words.is_empty() {
            return Ok(None);
        }
        let invalid = |why: &str| ApiError::BadRequest(format!("Invalid filter {text:?}: {why}"));
        let mut clauses = Vec::new();
        let mut words = words.into_iter().peekable();
        let mut and = true;
        while let Some(mut word) = words.next() {
            let not = word.eq_ignore_ascii_case("not");
            if not {
                word = words
                    .next()
                    .ok_or_else(|| invalid("`not` needs a clause"))?;
            }
            let field = word;
            let operator = words
                .next()
                .ok_or_else(|| invalid("a clause needs an operator"))?;
            let equal = match operator.to_ascii_lowercase().as_str() {
                "eq" => true,
                "ne" => false,
                other => return Err(invalid(&format!("unknown operator {other:?} (eq, ne)"))),
            };
            let value = words
                .next()
                .ok_or_else(|| invalid("a clause needs a value"))?;
            clauses.push(Clause {
                and,
                not,
                field,
                equal,
                value,
            });
            match words.next() {
                None => break,
                Some(join) if join.eq_ignore_ascii_case("and") => and = true,
                Some(join) if join.eq_ignore_ascii_case("or") => and = false,
                Some(other) => {
                    return Err(invalid(&format!("expected `and` or `or`, found {other:?}")));
                }
            }
            if words.peek().is_none() {
                return Err(invalid("a clause must follow `and`/`or`"));
            }
        }
        Ok(Some(Self { clauses }))
    }

    /// Whether `object` (an instance's JSON form) passes the filter.
    pub fn matches(&self, object: &Value) -> bool {
        self.clauses.iter().fold(true, |so_far, clause| {
            let found = field_text(object, &clause.field);
            let matched = (found == clause.value) == clause.equal;
            let matched = matched != clause.not;
            if clause.and {
                so_far && matched
            } else {
                so_far || matched
            }
        })
    }
}

/// Splits on spaces, keeping double-quoted words (with `\"` inside) whole.
fn split_words(text: &str) -> Result<Vec<String>, ApiError> {
    let mut words = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&next) = chars.peek() {
        if next.is_whitespace() {
            chars.next();
            continue;
        }
        let mut word = String::new();
        if next == '"' {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => word.extend(chars.next()),
                    Some(other) => word.push(other),
                    None => {
                        return Err(ApiError::BadRequest(format!(
                            "Invalid filter {text:?}: unterminated quote"
                        )));
                    }
                }
            }
        } else {
            while let Some(&next) = chars.peek() {
                if next.is_whitespace() {
                    break;
                }
                word.push(next);
                chars.next();
            }
        }
        words.push(word);
    }
    Ok(words)
}

/// The text of the field at a dotted `path` in `object` (`""` when missing).
fn field_text(object: &Value, path: &str) -> String {
    match lookup(object, path) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// Walks a dotted path, preferring the longest map key that matches (keys such as
/// `limits.cpu` contain dots).
fn lookup<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(object);
    }
    let map = object.as_object()?;
    let mut split_points: Vec<usize> = path.match_indices('.').map(|(index, _)| index).collect();
    split_points.push(path.len());
    split_points.into_iter().rev().find_map(|end| {
        let value = map.get(&path[..end])?;
        lookup(value, path.get(end + 1..).unwrap_or_default())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> Value {
        json!({"name": "v1", "status": "Running", "status_code": 103,
            "config": {"limits.cpu": "2", "user.role": "web server"}})
    }

    fn matches(filter: &str) -> bool {
        Filter::parse(filter).unwrap().unwrap().matches(&instance())
    }

    #[test]
    fn clauses_fields_and_joins() {
        assert!(Filter::parse("").unwrap().is_none());
        assert!(Filter::parse("   ").unwrap().is_none());
        assert!(matches("name eq v1"));
        assert!(!matches("name eq v2"));
        assert!(matches("name ne v2"));
        assert!(matches("not name eq v2"));
        assert!(matches("status_code eq 103"));
        assert!(matches("config.limits.cpu eq 2"));
        assert!(matches("config.user.role eq \"web server\""));
        assert!(matches("config.missing eq \"\""));
        assert!(matches("name eq v1 and status eq Running"));
        assert!(!matches("name eq v1 and status eq Stopped"));
        assert!(matches("name eq v2 or status eq Running"));
        assert!(matches("name EQ v1 AND status NE Stopped"));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            "name",
            "name eq",
            "name like v1",
            "name eq v1 and",
            "name eq v1 xor a eq b",
            "name eq \"v1",
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
