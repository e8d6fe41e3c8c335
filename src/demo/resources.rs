//! Resources: two demo resources, the conformance fixtures, two templates, and the
//! `notifications/resources/updated` sent to subscribers.

use serde_json::{json, Value};

use super::media::{LOGO_PNG, RED_PIXEL_PNG};
use super::message::{RpcError, RESOURCE_NOT_FOUND};
use super::rpc::RequestCtx;

const README: &str = "# shadowcat demo server\n\n\
Tools: echo, add, slow, sample, elicit, roots, log, touch_resource and the conformance \
fixtures (test_*).\n\nResources: demo://readme, demo://logo, demo://items/{id} and the \
test:// fixtures.\n";

/// `(uri, name, description, mimeType)` of every direct resource.
const RESOURCES: [(&str, &str, &str, &str); 5] = [
    ("demo://readme", "readme", "What this demo server offers", "text/markdown"),
    ("demo://logo", "logo", "A tiny PNG logo", "image/png"),
    ("test://static-text", "Static text", "A static text resource", "text/plain"),
    ("test://static-binary", "Static binary", "A static PNG resource", "image/png"),
    (
        "test://watched-resource",
        "Watched resource",
        "A resource to subscribe to (touch it with tool touch_resource)",
        "text/plain",
    ),
];

/// `(prefix, suffix)` around `{id}` of the two templates.
const ITEM_TEMPLATE: (&str, &str) = ("demo://items/", "");
const FIXTURE_TEMPLATE: (&str, &str) = ("test://template/", "/data");

/// The URI templates, also the `ref/resource` URIs that completion knows.
pub(crate) const ITEM_TEMPLATE_URI: &str = "demo://items/{id}";
/// The conformance fixture template.
pub(crate) const FIXTURE_TEMPLATE_URI: &str = "test://template/{id}/data";

/// `resources/list`.
pub(crate) fn list() -> Vec<Value> {
    RESOURCES
        .iter()
        .map(|(uri, name, description, mime)| {
            json!({ "uri": uri, "name": name, "description": description, "mimeType": mime })
        })
        .collect()
}

/// `resources/templates/list`.
pub(crate) fn templates() -> Vec<Value> {
    vec![
        json!({
            "uriTemplate": ITEM_TEMPLATE_URI,
            "name": "item",
            "description": "A demo item by id, as JSON",
            "mimeType": "application/json",
        }),
        json!({
            "uriTemplate": FIXTURE_TEMPLATE_URI,
            "name": "Template data",
            "description": "Data for an id (conformance fixture)",
            "mimeType": "application/json",
        }),
    ]
}

/// Whether `uri` is a direct resource.
pub(crate) fn is_static(uri: &str) -> bool {
    RESOURCES.iter().any(|(known, ..)| *known == uri)
}

/// The `{id}` of `uri` if it matches `prefix{id}suffix`, with `id` one non-empty path segment.
fn template_id<'a>(uri: &'a str, (prefix, suffix): (&str, &str)) -> Option<&'a str> {
    let id = uri.strip_prefix(prefix)?.strip_suffix(suffix)?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

fn text(uri: &str, mime: &str, text: impl Into<String>) -> Value {
    json!({ "contents": [{ "uri": uri, "mimeType": mime, "text": text.into() }] })
}

fn blob(uri: &str, mime: &str, data: &str) -> Value {
    json!({ "contents": [{ "uri": uri, "mimeType": mime, "blob": data }] })
}

/// `resources/read`; an unknown URI is error -32002 with `data: {uri}`.
pub(crate) fn read(uri: &str) -> Result<Value, RpcError> {
    let contents = match uri {
        "demo://readme" => text(uri, "text/markdown", README),
        "demo://logo" => blob(uri, "image/png", LOGO_PNG),
        "test://static-text" => text(uri, "text/plain", "This is the content of the static text resource."),
        "test://static-binary" => blob(uri, "image/png", RED_PIXEL_PNG),
        "test://watched-resource" => text(uri, "text/plain", "Watched resource content."),
        _ => {
            if let Some(id) = template_id(uri, ITEM_TEMPLATE) {
                let item = json!({ "id": id, "name": format!("Item {id}") });
                text(uri, "application/json", item.to_string())
            } else if let Some(id) = template_id(uri, FIXTURE_TEMPLATE) {
                let data = json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
                text(uri, "application/json", data.to_string())
            } else {
                return Err(RpcError::new(RESOURCE_NOT_FOUND, format!("Resource not found: {uri}"))
                    .with_data(json!({ "uri": uri })));
            }
        }
    };
    Ok(contents)
}

/// Sends `notifications/resources/updated` for `uri` if the client subscribed to it.
pub(crate) async fn notify_updated(ctx: &RequestCtx, uri: &str) -> bool {
    if !ctx.peer.session.is_subscribed(uri) {
        return false;
    }
    ctx.peer.notify("notifications/resources/updated", json!({ "uri": uri })).await;
    true
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn matches_templates() {
        assert_eq!(template_id("test://template/123/data", FIXTURE_TEMPLATE), Some("123"));
        assert_eq!(template_id("test://template//data", FIXTURE_TEMPLATE), None);
        assert_eq!(template_id("test://template/a/b/data", FIXTURE_TEMPLATE), None);
        assert_eq!(template_id("demo://items/7", ITEM_TEMPLATE), Some("7"));
        assert_eq!(template_id("demo://items/", ITEM_TEMPLATE), None);
        assert!(read("demo://nothing").is_err());
    }
}
