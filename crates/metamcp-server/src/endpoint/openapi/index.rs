//! The REST face's view of a namespace's tool catalog: each listing parsed once into
//! tool definitions, and each tool's `inputSchema` compiled once into a validator.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::namespace::catalog::Listing;

/// Above this many cached validators the cache is emptied (namespaces and tools come and go).
const MAX_VALIDATORS: usize = 10_000;

/// One tool of a namespace's catalog, as this face needs it.
#[derive(Debug)]
pub(super) struct ToolDef {
    pub(super) name: String,
    pub(super) title: Option<String>,
    pub(super) description: Option<String>,
    pub(super) input_schema: Value,
    pub(super) output_schema: Option<Value>,
    /// `input_schema` serialized: the validator cache's key.
    pub(super) schema_text: String,
}

/// The tools of one catalog listing, in catalog order.
#[derive(Debug)]
pub(super) struct ToolIndex {
    pub(super) tools: Vec<Arc<ToolDef>>,
    pub(super) by_name: HashMap<String, Arc<ToolDef>>,
}

/// A compiled input validator, or why the schema could not be compiled.
pub(super) type Compiled = Result<Arc<jsonschema::Validator>, Arc<str>>;

/// A catalog listing and the index parsed from it.
type Indexed = (Arc<Listing>, Arc<ToolIndex>);

/// Parsed tool lists and compiled validators, shared by every REST request.
#[derive(Default)]
pub struct RestCache {
    /// Namespace id → the listing last parsed and its index (reused while the catalog hands
    /// out the same listing).
    indexes: Mutex<HashMap<String, Indexed>>,
    /// (namespace id, tool name) → (schema text, validator).
    validators: Mutex<HashMap<(String, String), (String, Compiled)>>,
}

impl std::fmt::Debug for RestCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestCache")
            .field("indexes", &self.indexes.lock().len())
            .field("validators", &self.validators.lock().len())
            .finish()
    }
}

impl RestCache {
    pub(super) fn index(&self, ns_id: &str, listing: &Arc<Listing>) -> Arc<ToolIndex> {
        if let Some((l, idx)) = self.indexes.lock().get(ns_id)
            && Arc::ptr_eq(l, listing)
        {
            return idx.clone();
        }
        let idx = Arc::new(parse_listing(&listing.json));
        self.indexes
            .lock()
            .insert(ns_id.to_owned(), (listing.clone(), idx.clone()));
        idx
    }

    pub(super) fn validator(&self, ns_id: &str, tool: &ToolDef) -> Compiled {
        let key = (ns_id.to_owned(), tool.name.clone());
        if let Some((text, compiled)) = self.validators.lock().get(&key)
            && *text == tool.schema_text
        {
            return compiled.clone();
        }
        // Compiled outside the lock: a large schema must not stall other calls.
        let compiled: Compiled = jsonschema::validator_for(&tool.input_schema)
            .map(Arc::new)
            .map_err(|e| Arc::from(e.to_string()));
        let mut map = self.validators.lock();
        if map.len() >= MAX_VALIDATORS {
            map.clear();
        }
        map.insert(key, (tool.schema_text.clone(), compiled.clone()));
        compiled
    }
}

fn parse_listing(json: &str) -> ToolIndex {
    let parsed: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    let mut tools = Vec::new();
    let mut by_name = HashMap::new();
    for t in parsed["tools"].as_array().into_iter().flatten() {
        let Some(name) = t["name"].as_str() else {
            continue;
        };
        if by_name.contains_key(name) {
            continue;
        }
        let input_schema = match &t["inputSchema"] {
            v @ Value::Object(_) => v.clone(),
            _ => json!({ "type": "object" }),
        };
        let def = Arc::new(ToolDef {
            name: name.to_owned(),
            title: t["title"]
                .as_str()
                .or_else(|| t["annotations"]["title"].as_str())
                .map(str::to_owned),
            description: t["description"].as_str().map(str::to_owned),
            schema_text: input_schema.to_string(),
            input_schema,
            output_schema: t["outputSchema"]
                .as_object()
                .map(|o| Value::Object(o.clone())),
        });
        by_name.insert(name.to_owned(), def.clone());
        tools.push(def);
    }
    ToolIndex { tools, by_name }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn validators_are_compiled_once_per_schema_and_follow_refs() {
        let schema = json!({
            "type": "object",
            "$defs": {
                "node": {
                    "type": "object",
                    "properties": {
                        "value": { "type": "integer" },
                        "children": { "type": "array", "items": { "$ref": "#/$defs/node" } }
                    }
                }
            },
            "properties": { "tree": { "$ref": "#/$defs/node" }, "again": { "$ref": "#" } }
        });
        let def = |schema: Value| ToolDef {
            name: "t".to_owned(),
            title: None,
            description: None,
            schema_text: schema.to_string(),
            input_schema: schema,
            output_schema: None,
        };
        let cache = RestCache::default();
        let tool = def(schema);
        let v1 = cache.validator("ns", &tool).unwrap();
        let v2 = cache.validator("ns", &tool).unwrap();
        assert!(Arc::ptr_eq(&v1, &v2), "recompiled an unchanged schema");
        let args = json!({
            "tree": { "value": 1, "children": [{ "value": "x" }] },
            "again": { "tree": { "value": 1.5 } }
        });
        let mut paths: Vec<String> = v1
            .iter_errors(&args)
            .map(|e| e.instance_path().to_string())
            .collect();
        paths.sort();
        assert_eq!(paths, ["/again/tree/value", "/tree/children/0/value"]);
        // Another schema under the same name: compiled anew.
        let v3 = cache
            .validator("ns", &def(json!({ "type": "object" })))
            .unwrap();
        assert!(!Arc::ptr_eq(&v1, &v3));
        assert!(v3.is_valid(&args));
    }
}
