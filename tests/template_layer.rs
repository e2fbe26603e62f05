//! The sentence encoder on AWS, as `template.yaml` ships it: a layer built from the
//! directory `scripts/build-layer` lays out, given (with the model's path and the memory it
//! needs) to exactly the functions that read the knowledge base, and a parameter that turns
//! it off and leaves them on the lexical ranking.

mod template;

use template::Template;

/// Where Lambda unpacks a layer.
const LAYER_ROOT: &str = "/opt/";

#[test]
fn semantic_ranking_is_a_parameter_on_by_default() {
    let t = Template::load();
    let p = t.parameter("SemanticRanking");
    assert_eq!(p["Default"], "\"on\"");
    assert_eq!(p["AllowedValues"], "[\"on\", \"off\"]");
    assert_eq!(
        t.condition("WithSemanticRanking"),
        "!Equals [!Ref SemanticRanking, \"on\"]"
    );
}

#[test]
fn the_layer_is_the_directory_the_build_script_lays_out() {
    let t = Template::load();
    let layer = t.resource("SentenceEncoderLayer");
    assert_eq!(
        layer.prop("Type").as_deref(),
        Some("AWS::Serverless::LayerVersion")
    );
    assert_eq!(
        layer.prop("Condition").as_deref(),
        Some("WithSemanticRanking")
    );
    assert_eq!(layer.prop("LicenseInfo").as_deref(), Some("MIT"));
    let dir = layer.prop("ContentUri").expect("ContentUri");
    let script =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/build-layer"))
            .unwrap();
    assert!(script.contains(&format!("out=\"{dir}\"")), "{dir}");
    assert!(script.contains("cp \"$model\" \"$out/model/e5-small-q4.bin\""));
    assert!(
        script.contains("scripts/fetch-model"),
        "the sha256-checked fetch"
    );
}

#[test]
fn exactly_the_functions_that_read_the_knowledge_base_get_the_model() {
    let t = Template::load();
    let model = format!("{LAYER_ROOT}model/e5-small-q4.bin");
    let mut with = Vec::new();
    for f in t.resources_of_type("AWS::Serverless::Function") {
        let env = f.env();
        let reads_articles = env.contains_key("ARTICLES_TABLE");
        let layers = f.prop("Layers");
        if reads_articles {
            assert_eq!(
                env.get("HELPDESK_MODEL").map(String::as_str),
                Some(format!("!If [WithSemanticRanking, {model}, \"off\"]").as_str()),
                "{}",
                f.name
            );
            assert_eq!(
                layers.as_deref(),
                Some("!If [WithSemanticRanking, [!Ref SentenceEncoderLayer], !Ref AWS::NoValue]"),
                "{}",
                f.name
            );
            // The model resident, and a CPU share to embed a message quickly: 1,024 MB.
            let memory = f.prop("MemorySize").unwrap_or_default();
            assert!(
                memory.starts_with("!If [WithSemanticRanking, 1024,"),
                "{}: {memory}",
                f.name
            );
            with.push(f.name.clone());
        } else {
            assert!(layers.is_none(), "{} has a layer it does not use", f.name);
            assert!(!env.contains_key("HELPDESK_MODEL"), "{}", f.name);
        }
    }
    with.sort();
    assert_eq!(
        with,
        ["AutoReplyFunction", "KbIndexerFunction", "TicketsFunction"]
    );
}
