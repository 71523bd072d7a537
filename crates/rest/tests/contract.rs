//! The documents that are the API's contract stay in step with the code: `api-extensions.md`
//! with the extension list, and the committed swagger files with the handlers' annotations.

use std::path::PathBuf;

use vgashot_rest::extensions::{API_EXTENSIONS, FIRST_OWN_EXTENSION};
use vgashot_rest::openapi;

fn workspace_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(name)
}

#[test]
fn api_extensions_md_lists_every_extension_in_order() {
    let text = std::fs::read_to_string(workspace_file("api-extensions.md")).unwrap();
    let documented: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("## `")?.strip_suffix('`'))
        .collect();
    assert_eq!(
        documented, API_EXTENSIONS,
        "api-extensions.md must have one `## \\`name\\`` entry per extension, in the order of \
         API_EXTENSIONS in crates/rest/src/extensions.rs"
    );
    // Incus's extensions come first, vgashot's own follow them; where the checkout has a real
    // incusd's `GET /1.0` next to it, the split is checked against upstream's own list.
    let own = API_EXTENSIONS
        .iter()
        .position(|name| *name == FIRST_OWN_EXTENSION)
        .expect("FIRST_OWN_EXTENSION is listed");
    let oracle = workspace_file("../shared/incus-oracle/incus-6.0.4.json");
    let Ok(text) = std::fs::read_to_string(&oracle) else {
        eprintln!("split not checked: no oracle at {}", oracle.display());
        return;
    };
    let oracle: serde_json::Value = serde_json::from_str(&text).unwrap();
    let upstream: Vec<&str> = oracle["get-1.0"]["body"]["metadata"]["api_extensions"]
        .as_array()
        .expect("the oracle lists upstream's extensions")
        .iter()
        .filter_map(serde_json::Value::as_str)
        .collect();
    let (incus, ours) = API_EXTENSIONS.split_at(own);
    for name in incus {
        assert!(
            upstream.contains(name),
            "{name} is listed as Incus's but incusd lacks it"
        );
    }
    for name in ours {
        assert!(
            !upstream.contains(name),
            "{name} is listed as vgashot's but incusd has it"
        );
    }
}

#[test]
fn committed_swagger_files_are_current() {
    for (file, generated) in [
        ("swagger/rest-api.yaml", openapi::yaml()),
        ("swagger/rest-api.json", openapi::json()),
    ] {
        let committed = std::fs::read_to_string(workspace_file(file)).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} is stale: run `cargo xtask swagger` and commit the result"
        );
    }
}

#[test]
fn the_console_operation_documents_both_media_types_and_the_type_enum() {
    let spec: serde_json::Value = serde_json::from_str(&openapi::json()).unwrap();
    let get = &spec["paths"]["/1.0/instances/{name}/console"]["get"];
    let content = &get["responses"]["200"]["content"];
    assert!(content.get("image/png").is_some(), "{content}");
    assert!(
        content.get("application/octet-stream").is_some(),
        "{content}"
    );
    let type_param = get["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|parameter| parameter["name"] == "type")
        .expect("the type parameter");
    let schema = serde_json::to_string(&type_param["schema"]).unwrap();
    let resolved = if let Some(reference) = type_param["schema"]["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        serde_json::to_string(&spec["components"]["schemas"][name]).unwrap()
    } else {
        schema
    };
    assert!(
        resolved.contains("\"log\"") && resolved.contains("\"vga\""),
        "{resolved}"
    );
}
