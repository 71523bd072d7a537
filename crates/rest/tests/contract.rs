//! The documents that are the API's contract stay in step with the code: `api-extensions.md`
//! with the extension list, and the committed swagger files with the handlers' annotations.

use std::path::PathBuf;

use vgashot_rest::extensions::API_EXTENSIONS;
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
    // Incus's extensions come first, ending with the screenshot; vgashot's own follow it.
    let screenshot = API_EXTENSIONS
        .iter()
        .position(|name| *name == "instance_console_screenshot")
        .expect("instance_console_screenshot is listed");
    assert!(
        API_EXTENSIONS[screenshot + 1..]
            .iter()
            .all(|name| name.starts_with("instance_console_screenshot_")),
        "only vgashot's own extensions follow instance_console_screenshot"
    );
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
