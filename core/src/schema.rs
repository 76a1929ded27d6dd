//! JSON schemas for the manifest types (compiled only with the `schema` feature, which
//! `byzsgd-api` turns on to generate the CRDs): the transform that makes internally tagged enums
//! structural. It imports nothing of the crate and sits at its bottom, so every manifest type can
//! name it without an import cycle.

/// Schema transform for the internally tagged enums of a manifest (`{kind: mlp, hidden: […]}`).
///
/// schemars describes them as a `oneOf` whose branches differ in the constant of `kind`, which a
/// Kubernetes structural schema cannot express (branches may not declare types or differing
/// properties). This rewrites the union into one object: `kind` becomes a string enum of every
/// variant name, and the other properties are the union of the variants' properties, each
/// documented by its variant. Deserialization still rejects a field the chosen kind lacks.
pub fn structural_tagged_union(schema: &mut schemars::Schema) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let Some(serde_json::Value::Array(variants)) = object.remove("oneOf") else {
        return;
    };
    let mut kinds = Vec::new();
    let mut properties = serde_json::Map::new();
    for variant in variants {
        let serde_json::Value::Object(mut variant) = variant else {
            continue;
        };
        let Some(serde_json::Value::Object(variant_properties)) = variant.remove("properties")
        else {
            continue;
        };
        for (name, property) in variant_properties {
            if name == "kind" {
                if let Some(value) = property.get("const") {
                    kinds.push(value.clone());
                } else if let Some(serde_json::Value::Array(values)) = property.get("enum") {
                    kinds.extend(values.iter().cloned());
                }
            } else {
                // A default belongs to its variant: the API server would apply it to every kind
                // (e.g. `hidden` to a logistic model), which the node then rejects.
                let mut property = property;
                if let Some(fields) = property.as_object_mut() {
                    fields.remove("default");
                }
                properties.entry(name).or_insert(property);
            }
        }
    }
    properties.insert(
        "kind".into(),
        serde_json::json!({"type": "string", "enum": kinds}),
    );
    object.insert("type".into(), "object".into());
    object.insert("properties".into(), properties.into());
    object.insert("required".into(), serde_json::json!(["kind"]));
}
