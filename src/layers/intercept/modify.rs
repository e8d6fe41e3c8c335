//! The `modify` action: a message changed by JSONPath (RFC 9535) before it goes on.
//! In order: `remove` every node a path selects, `rename` the keys a path selects
//! (the value stays, under the new name in the same object), `set` the nodes a path
//! selects to a value (a path that selects nothing adds the key, when its parent
//! object exists), `append` items to the arrays a path selects (a tool to a
//! `tools/list` answer), and `transform` the strings and numbers a path selects.

use std::collections::BTreeMap;

use jsonpath_rust::query::queryable::Queryable;
use jsonpath_rust::JsonPath;
use serde::Deserialize;
use serde_json::Value;

/// `modify` as written in a rule file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModifySpec {
    #[serde(default)]
    remove: Vec<String>,
    #[serde(default)]
    rename: BTreeMap<String, String>,
    #[serde(default)]
    set: BTreeMap<String, Value>,
    #[serde(default)]
    append: BTreeMap<String, Value>,
    #[serde(default)]
    transform: BTreeMap<String, TransformSpec>,
}

/// What to do to a string or a number.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformSpec {
    #[serde(default)]
    upper: bool,
    #[serde(default)]
    lower: bool,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    replace: Option<ReplaceSpec>,
    #[serde(default)]
    add: Option<f64>,
    #[serde(default)]
    multiply: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplaceSpec {
    regex: String,
    with: String,
}

/// A compiled transform.
#[derive(Debug)]
struct Transform {
    upper: bool,
    lower: bool,
    prefix: Option<String>,
    suffix: Option<String>,
    replace: Option<(regex::Regex, String)>,
    add: Option<f64>,
    multiply: Option<f64>,
}

/// A compiled `modify`.
#[derive(Debug)]
pub struct Modify {
    remove: Vec<String>,
    rename: Vec<(String, String)>,
    set: Vec<(String, Value)>,
    /// Items to add to the arrays a path selects.
    append: Vec<(String, Vec<Value>)>,
    transform: Vec<(String, Transform)>,
}

fn check_path(path: &str, key: &str) -> Result<(), (String, String)> {
    jsonpath_rust::parser::parse_json_path(path)
        .map(|_| ())
        .map_err(|e| (format!("action.modify.{key}"), format!("{path:?} is not a JSONPath (RFC 9535): {e}")))
}

impl Modify {
    pub(super) fn compile(spec: ModifySpec) -> Result<Modify, (String, String)> {
        let keyed = [
            ("remove", spec.remove.iter().collect::<Vec<_>>()),
            ("rename", spec.rename.keys().collect()),
            ("set", spec.set.keys().collect()),
            ("append", spec.append.keys().collect()),
            ("transform", spec.transform.keys().collect()),
        ];
        for (key, paths) in keyed {
            paths.into_iter().try_for_each(|path| check_path(path, key))?;
        }
        let transform = spec
            .transform
            .into_iter()
            .map(|(path, t)| {
                let replace = match t.replace {
                    Some(r) => Some((
                        regex::Regex::new(&r.regex).map_err(|e| {
                            ("action.modify.transform".to_owned(), format!("{path}: replace.regex {:?}: {e}", r.regex))
                        })?,
                        r.with,
                    )),
                    None => None,
                };
                let t = Transform {
                    upper: t.upper,
                    lower: t.lower,
                    prefix: t.prefix,
                    suffix: t.suffix,
                    replace,
                    add: t.add,
                    multiply: t.multiply,
                };
                Ok((path, t))
            })
            .collect::<Result<Vec<(String, Transform)>, (String, String)>>()?;
        if spec.remove.is_empty()
            && spec.rename.is_empty()
            && spec.set.is_empty()
            && spec.append.is_empty()
            && transform.is_empty()
        {
            return Err(("action.modify".into(), "give at least one of remove, rename, set, append, transform".into()));
        }
        let (rename, set) = (spec.rename.into_iter().collect(), spec.set.into_iter().collect());
        // A list is the items to add; anything else, one item.
        let append = spec
            .append
            .into_iter()
            .map(|(path, items)| match items {
                Value::Array(items) => (path, items),
                item => (path, vec![item]),
            })
            .collect();
        Ok(Modify { remove: spec.remove, rename, set, append, transform })
    }

    /// Applies the changes to `message`; whether anything changed.
    pub fn apply(&self, message: &mut Value) -> bool {
        let mut changed = false;
        for path in &self.remove {
            changed |= message.delete_by_path(path).is_ok_and(|n| n > 0);
        }
        for (path, name) in &self.rename {
            let Ok(found) = message.query_only_path(path) else { continue };
            for at in found {
                let Some((parent, key)) = split_last(&at) else { continue };
                if let Some(Value::Object(map)) = message.reference_mut(parent.as_str()) {
                    if let Some(value) = map.remove(&key) {
                        map.insert(name.clone(), value);
                        changed = true;
                    }
                }
            }
        }
        for (path, value) in &self.set {
            let found = message.query_only_path(path).unwrap_or_default();
            if found.is_empty() {
                // A new key: `$.a.b.name` with `$.a.b` an object.
                if let Some((parent, name)) = path.rsplit_once('.').filter(|(_, n)| is_name(n)) {
                    let parents = message.query_only_path(parent).unwrap_or_default();
                    for at in parents {
                        if let Some(Value::Object(map)) = message.reference_mut(at) {
                            map.insert(name.to_owned(), value.clone());
                            changed = true;
                        }
                    }
                }
                continue;
            }
            for at in found {
                if let Some(node) = message.reference_mut(at) {
                    changed |= node != value;
                    *node = value.clone();
                }
            }
        }
        for (path, items) in &self.append {
            let found = message.query_only_path(path).unwrap_or_default();
            for at in found {
                if let Some(Value::Array(list)) = message.reference_mut(at) {
                    list.extend(items.iter().cloned());
                    changed |= !items.is_empty();
                }
            }
        }
        for (path, t) in &self.transform {
            let Ok(found) = message.query_only_path(path) else { continue };
            for at in found {
                if let Some(node) = message.reference_mut(at) {
                    changed |= t.apply(node);
                }
            }
        }
        changed
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// A normalized path (`$['a']['b']`) split into its parent and last key.
fn split_last(path: &str) -> Option<(String, String)> {
    let body = path.strip_suffix("']")?;
    let start = body.rfind("['")?;
    Some((path[..start].to_owned(), body[start + 2..].replace("\\'", "'")))
}

impl Transform {
    /// Transforms a string or a number; whether it was one this transform touches
    /// (the message is then written anew).
    fn apply(&self, node: &mut Value) -> bool {
        match node {
            Value::String(s) => {
                let before = s.len();
                let had_replace = self.replace.as_ref().is_some_and(|(re, _)| re.is_match(s));
                if let Some((re, with)) = &self.replace {
                    *s = re.replace_all(s, with.as_str()).into_owned();
                }
                if self.upper {
                    *s = s.to_uppercase();
                }
                if self.lower {
                    *s = s.to_lowercase();
                }
                if let Some(p) = &self.prefix {
                    s.insert_str(0, p);
                }
                if let Some(x) = &self.suffix {
                    s.push_str(x);
                }
                had_replace || self.upper || self.lower || s.len() != before
            }
            Value::Number(n) if self.add.is_some() || self.multiply.is_some() => {
                let Some(mut x) = n.as_f64() else { return false };
                if let Some(m) = self.multiply {
                    x *= m;
                }
                if let Some(a) = self.add {
                    x += a;
                }
                let was_integer = n.is_i64() || n.is_u64();
                *node = if was_integer && x.fract() == 0.0 && x.abs() < 9.0e15 {
                    Value::from(x as i64)
                } else {
                    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
                };
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn modify(yaml: &str) -> Result<Modify, (String, String)> {
        let spec: ModifySpec = serde_saphyr::from_str(yaml).expect("spec");
        Modify::compile(spec)
    }

    #[test]
    fn remove_rename_set_and_transform() {
        let m = modify(
            r#"
remove: ["$.params._meta"]
rename: { "$.params.arguments.msg": message }
set: { "$.params.arguments.extra": true, "$.params.name": echo }
transform:
  "$.params.arguments.message": { upper: true, prefix: ">> ", replace: { regex: "o+", with: "0" } }
  "$.params.arguments.n": { multiply: 2, add: 1 }
"#,
        )
        .expect("valid");
        let mut v = json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shout","_meta":{"progressToken":1},"arguments":{"msg":"foo boo","n":20}}});
        assert!(m.apply(&mut v));
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":">> F0 B0","n":41,"extra":true}}})
        );
        let mut unchanged = json!({"jsonrpc":"2.0","method":"notifications/initialized"});
        assert!(!m.apply(&mut unchanged), "nothing selected, nothing changed");
    }

    #[test]
    fn append_adds_to_the_arrays_selected() {
        let m = modify("append: { \"$.result.tools\": [ { name: weather } ], \"$.result.tags\": new }").expect("valid");
        let mut v = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo"}],"tags":"not a list"}});
        assert!(m.apply(&mut v));
        assert_eq!(v["result"]["tools"], json!([{"name":"echo"},{"name":"weather"}]));
        assert_eq!(v["result"]["tags"], "not a list", "only arrays are appended to");
        let mut none = json!({"jsonrpc":"2.0","id":1,"result":{}});
        assert!(!m.apply(&mut none), "no array there, nothing changed");
        let (key, _) = modify("append: { '$.result[': 1 }").expect_err("bad path");
        assert_eq!(key, "action.modify.append");
    }

    #[test]
    fn bad_paths_and_regexes_are_errors() {
        let (key, e) = modify("remove: ['$.params[']").expect_err("bad path");
        assert_eq!(key, "action.modify.remove");
        assert!(e.contains("not a JSONPath"), "{e}");
        let (key, e) = modify("transform: { '$.a': { replace: { regex: '(', with: x } } }").expect_err("bad regex");
        assert_eq!(key, "action.modify.transform");
        assert!(e.contains("replace.regex"), "{e}");
        assert!(modify("{}").is_err(), "an empty modify");
    }
}
