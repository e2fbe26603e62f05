//! What each function of `template.yaml` may touch, checked against the template's text:
//! no grant on every resource of a data service, no wildcard over the secrets, no Scan
//! for a function that never scans, intake's DynamoDB actions table by table, each
//! function reading only the secrets it is configured with, OpenSearch reachable only
//! through the domain's own access policy, and every HTTP route behind the agents' JWT
//! authorizer but the listed public ones. `cfn-lint template.yaml` (in `scripts/test`)
//! checks the rest of the template.

mod template;

use std::collections::{BTreeMap, BTreeSet};
use template::{parameter_of_env, Statement, Template};

/// Services that hold the desk's data or secrets.
const DATA_SERVICES: [&str; 7] = [
    "dynamodb:",
    "ssm:",
    "es:",
    "sqs:",
    "s3:",
    "secretsmanager:",
    "kms:",
];

/// SAM policy templates a function may use: each names one resource exactly. The DynamoDB
/// ones (`DynamoDBCrudPolicy`, `DynamoDBReadPolicy`) grant Scan and batch writes.
const ALLOWED_SAM_POLICIES: [&str; 1] = ["SQSSendMessagePolicy"];

fn functions(t: &Template) -> Vec<(String, Vec<Statement>, Vec<String>)> {
    t.resources_of_type("AWS::Serverless::Function")
        .into_iter()
        .map(|r| {
            let (statements, sam) = r.policies();
            (r.name.clone(), statements, sam)
        })
        .collect()
}

#[test]
fn no_function_may_touch_every_resource_of_a_data_service() {
    let t = Template::load();
    let mut checked = 0;
    for (name, statements, sam) in functions(&t) {
        for policy in &sam {
            assert!(
                ALLOWED_SAM_POLICIES.contains(&policy.as_str()),
                "{name} uses the SAM policy {policy}: list the actions and resources instead"
            );
        }
        for s in statements.iter().filter(|s| {
            s.actions
                .iter()
                .any(|a| DATA_SERVICES.iter().any(|d| a.starts_with(d)))
        }) {
            assert!(
                !s.resources.is_empty(),
                "{name}: a statement without Resource"
            );
            for r in &s.resources {
                checked += 1;
                assert_ne!(r, "*", "{name} grants {:?} on every resource", s.actions);
                // The one wildcard allowed: the indexes of one named table.
                let wild = r.contains('*') && !is_table_indexes(r);
                assert!(
                    !wild,
                    "{name} grants {:?} on {r}, a wildcard over a data service",
                    s.actions
                );
                assert!(
                    !r.contains(":domain/"),
                    "{name}: OpenSearch is granted by the domain's access policy, not by roles"
                );
            }
        }
    }
    assert!(
        checked > 20,
        "too few grants found: is the template still parsed?"
    );
}

fn is_table_indexes(resource: &str) -> bool {
    resource
        .strip_suffix("/index/*")
        .is_some_and(|t| t.starts_with("${") && t.ends_with("Table.Arn}") && !t.contains('*'))
}

/// The SSM parameters a function is configured to read: its `*_PARAM` variables, with the
/// global ones.
fn parameters_read(t: &Template, function: &str) -> BTreeSet<String> {
    let mut vars = t.global_env();
    vars.extend(t.resource(function).env());
    vars.iter()
        .filter(|(k, _)| k.ends_with("_PARAM"))
        .filter_map(|(_, v)| parameter_of_env(v))
        .collect()
}

#[test]
fn each_function_reads_exactly_the_secrets_it_is_configured_with() {
    let t = Template::load();
    for (name, statements, _) in functions(&t) {
        let granted: BTreeSet<String> = statements
            .iter()
            .filter(|s| s.actions.iter().any(|a| a.starts_with("ssm:")))
            .flat_map(|s| s.resources.iter())
            .map(|r| {
                let (_, param) = r
                    .split_once(":parameter")
                    .unwrap_or_else(|| panic!("{name}: {r} is not a parameter ARN"));
                assert!(!param.contains('*'), "{name}: {r} is a prefix over secrets");
                param.to_string()
            })
            .collect();
        let read = parameters_read(&t, &name);
        assert_eq!(
            granted, read,
            "{name}: the SSM grants differ from the parameters its *_PARAM variables name"
        );
    }
    // The survey key signs the links customers rate with: only the functions that sign or
    // check them (and intake, which checks the survey buttons pressed in a channel) may
    // read it, and the webhooks' secrets stay with intake.
    let readers = |param: &str| -> BTreeSet<String> {
        functions(&t)
            .into_iter()
            .filter(|(n, _, _)| parameters_read(&t, n).contains(param))
            .map(|(n, _, _)| n)
            .collect()
    };
    assert_eq!(
        readers("${SurveySecretParameter}"),
        BTreeSet::from([
            "IntakeFunction".into(),
            "SurveyFunction".into(),
            "TicketsFunction".into()
        ])
    );
    for inbound in [
        "${ChannelSecretsPath}whatsapp-app-secret",
        "${ChannelSecretsPath}whatsapp-verify-token",
        "${ChannelSecretsPath}telegram-secret-token",
    ] {
        assert_eq!(
            readers(inbound),
            BTreeSet::from(["IntakeFunction".into()]),
            "{inbound}"
        );
    }
    for outbound in [
        "${ChannelSecretsPath}whatsapp-access-token",
        "${ChannelSecretsPath}telegram-bot-token",
    ] {
        assert_eq!(
            readers(outbound),
            BTreeSet::from(["DispatchFunction".into()]),
            "{outbound}"
        );
    }
}

/// Every `.scan()` of the code, by file.
fn scans_in_code() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found: Vec<String> = ["shared/src", "functions"]
        .iter()
        .flat_map(|dir| walk_rs(&root.join(dir)))
        .filter(|path| {
            std::fs::read_to_string(path)
                .unwrap_or_default()
                .contains(".scan()")
        })
        .map(|path| {
            path.strip_prefix(root)
                .unwrap_or(&path)
                .display()
                .to_string()
        })
        .collect();
    found.sort();
    found
}

#[test]
fn only_the_functions_that_read_the_whole_knowledge_base_may_scan() {
    // The code scans in one place: the articles table, read whole to build a search index
    // (`DynamoKnowledge`). The router's sweep of messages left queued reads a sparse index
    // (`DynamoStore::queued_before`), never the table. A function scans only if it is given
    // the articles table.
    assert_eq!(scans_in_code(), ["shared/src/aws/knowledge.rs"]);
    let t = Template::load();
    for (name, statements, sam) in functions(&t) {
        let uses_articles = t.resource(&name).env().contains_key("ARTICLES_TABLE");
        // SAM's DynamoDB policy templates grant Scan (and batch writes) on their table.
        for policy in sam.iter().filter(|p| p.starts_with("DynamoDB")) {
            assert!(
                uses_articles && !policy.contains("Crud"),
                "{name} is granted Scan by {policy}, and never scans that table"
            );
        }
        for s in &statements {
            if s.actions
                .iter()
                .any(|a| a == "dynamodb:Scan" || a == "dynamodb:*")
            {
                assert!(
                    uses_articles,
                    "{name} never scans (it has no ARTICLES_TABLE) but is granted Scan"
                );
                assert_eq!(
                    s.resources,
                    ["ArticlesTable.Arn"],
                    "{name}: Scan only on the articles table"
                );
            }
            assert!(
                !s.actions
                    .iter()
                    .any(|a| a.ends_with(":*") || a.contains("Batch")),
                "{name}: {:?} (no wildcard actions, no batch operations: the code uses none)",
                s.actions
            );
        }
    }
}

#[test]
fn intake_may_use_only_the_dynamodb_actions_of_its_code_table_by_table() {
    let t = Template::load();
    let (statements, _) = t.resource("IntakeFunction").policies();
    let mut granted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &statements {
        for r in &s.resources {
            for a in s.actions.iter().filter(|a| a.starts_with("dynamodb:")) {
                granted.entry(r.clone()).or_default().insert(a.clone());
            }
        }
    }
    let set = |actions: &[&str]| -> BTreeSet<String> {
        actions.iter().map(|a| format!("dynamodb:{a}")).collect()
    };
    let expected = BTreeMap::from([
        // Sessions: created, and found by their token's hash.
        (
            "SessionsTable.Arn".to_string(),
            set(&["GetItem", "PutItem"]),
        ),
        // A visitor's customer and identity, made together on the first message.
        (
            "CustomersTable.Arn".to_string(),
            set(&["GetItem", "PutItem"]),
        ),
        (
            "IdentitiesTable.Arn".to_string(),
            set(&["GetItem", "PutItem"]),
        ),
        // Receipts on our messages (read, then a conditional put).
        (
            "MessagesTable.Arn".to_string(),
            set(&["GetItem", "PutItem"]),
        ),
        // A visitor's conversation; a receipt's message by its provider id.
        ("${MessagesTable.Arn}/index/*".to_string(), set(&["Query"])),
        // Dedupe claims: taken, read when taken already, released when queueing fails; and
        // the webchat's rate counters.
        (
            "IdempotencyTable.Arn".to_string(),
            set(&["GetItem", "PutItem", "DeleteItem", "UpdateItem"]),
        ),
    ]);
    assert_eq!(granted, expected);
}

/// The search functions only read and post (queries, and the write-back of stale question
/// vectors, a `_bulk` POST); only the indexer creates the index and removes articles.
#[test]
fn opensearch_is_searched_by_the_search_functions_and_kept_by_the_indexer() {
    let t = Template::load();
    let domain = t.resource("KnowledgeSearch");
    let statements = domain.access_policy();
    assert_eq!(statements.len(), 2, "{statements:?}");
    let by_principal: BTreeMap<Vec<String>, &Statement> = statements
        .iter()
        .map(|s| (s.principals.clone(), s))
        .collect();
    let search = by_principal[&vec![
        "AutoReplyFunctionRole.Arn".to_string(),
        "TicketsFunctionRole.Arn".to_string(),
    ]];
    assert_eq!(search.actions, ["es:ESHttpGet", "es:ESHttpPost"]);
    let indexer = by_principal[&vec!["KbIndexerFunctionRole.Arn".to_string()]];
    assert!(indexer.actions.contains(&"es:ESHttpPut".to_string()));
    for s in &statements {
        for r in &s.resources {
            assert!(
                r.ends_with(":domain/${Name}/*"),
                "the grant must name this stack's domain, not {r}"
            );
        }
    }
    // The name in the policy is the domain's own.
    let name = domain.prop("DomainName").expect("the domain is named");
    assert_eq!(domain.text().matches(name.as_str()).count(), 3);
}

/// The routes anyone may call: each checks its caller itself (a webhook's signature or
/// secret, a webchat session's token, a survey link's signature) or serves static files
/// (the widget, the console, which signs in before calling the API).
const PUBLIC_ROUTES: [(&str, &str); 12] = [
    ("GET", "/webhooks/whatsapp"),
    ("POST", "/webhooks/whatsapp"),
    ("POST", "/webhooks/telegram"),
    ("POST", "/webchat/sessions"),
    ("POST", "/webchat/messages"),
    ("GET", "/webchat/messages"),
    ("GET", "/widget.js"),
    ("GET", "/surveys/{token}"),
    ("POST", "/surveys/{token}"),
    ("GET", "/console"),
    ("GET", "/console/"),
    ("GET", "/console/{proxy+}"),
];

#[test]
fn every_route_is_private_unless_it_is_one_of_the_public_ones() {
    let t = Template::load();
    let api = t.resource("HttpApi");
    assert_eq!(
        api.find("DefaultAuthorizer").as_deref(),
        Some("AgentJwt"),
        "the HTTP API must need an agent's JWT by default"
    );
    let mut public = BTreeSet::new();
    let mut private = BTreeSet::new();
    for f in t.resources_of_type("AWS::Serverless::Function") {
        for e in f.http_events() {
            assert!(!e.path.is_empty() && !e.method.is_empty(), "{e:?}");
            let route = (e.method.clone(), e.path.clone());
            match e.authorizer.as_deref() {
                Some("NONE") => {
                    assert!(
                        PUBLIC_ROUTES.contains(&(e.method.as_str(), e.path.as_str())),
                        "{} {} ({}) is public but not one of the public routes: \
                         remove `Auth: {{Authorizer: NONE}}`, or add it to PUBLIC_ROUTES \
                         with the reason it may be",
                        e.method,
                        e.path,
                        f.name
                    );
                    public.insert(route);
                }
                None | Some("AgentJwt") => {
                    private.insert(route);
                }
                Some(other) => panic!("{} {}: unknown authorizer {other}", e.method, e.path),
            }
        }
    }
    let expected: BTreeSet<(String, String)> = PUBLIC_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        public, expected,
        "every public route is marked, and only those"
    );
    // The agent API is there, behind the authorizer.
    for route in [
        ("GET", "/tickets"),
        ("PUT", "/kb/articles/{id}"),
        ("GET", "/me"),
    ] {
        assert!(
            private.contains(&(route.0.to_string(), route.1.to_string())),
            "{route:?}"
        );
    }
    assert!(private.len() >= 18, "{private:?}");
}

#[test]
fn the_public_edge_is_throttled_and_webchat_sessions_expire() {
    let t = Template::load();
    let api = t.resource("HttpApi");
    for key in ["ThrottlingRateLimit", "ThrottlingBurstLimit"] {
        assert_eq!(
            api.find(key).as_deref().map(|v| v.starts_with("!Ref ")),
            Some(true),
            "the HTTP API's stage sets {key} from a parameter"
        );
    }
    assert!(api.text().contains("\"POST /webchat/sessions\":"));
    let intake = t.resource("IntakeFunction");
    assert!(intake
        .prop("ReservedConcurrentExecutions")
        .is_some_and(|v| v.contains("IntakeReservedConcurrency")));
    let env = intake.env();
    for var in [
        "WEBCHAT_SESSIONS_PER_MINUTE",
        "WEBCHAT_MESSAGES_PER_MINUTE",
        "WEBCHAT_SESSION_IDLE_SECS",
    ] {
        assert!(env.contains_key(var), "intake lacks {var}");
    }
    // The attribute the code writes (`expires_at`, Unix seconds) is the table's TTL.
    let ttl = t
        .resource("SessionsTable")
        .prop("TimeToLiveSpecification")
        .unwrap_or_default();
    assert!(
        ttl.contains("AttributeName: expires_at") && ttl.contains("Enabled: true"),
        "{ttl}"
    );
}

#[test]
fn the_console_sign_in_settings_reach_the_function_that_serves_the_console() {
    let t = Template::load();
    let tickets = t.resource("TicketsFunction").env();
    for var in [
        "HELPDESK_CONSOLE_OIDC_AUTHORIZE_URL",
        "HELPDESK_CONSOLE_OIDC_TOKEN_URL",
        "HELPDESK_CONSOLE_OIDC_CLIENT_ID",
    ] {
        assert!(
            tickets.contains_key(var),
            "TicketsFunction serves the console and must have {var}"
        );
        for (name, _, _) in functions(&t) {
            if name != "TicketsFunction" {
                assert!(
                    !t.resource(&name).env().contains_key(var),
                    "{name} does not serve the console but has {var}"
                );
            }
        }
    }
}

/// The routes `openapi.yaml` lists that the stack does not route, each with its reason.
const NOT_ROUTED_ON_AWS: [(&str, &str, &str); 2] = [
    // The local server's liveness check; on AWS each function's health is Lambda's own.
    ("GET", "/healthz", "local only"),
    // A file of the console, served by `GET /console/{proxy+}` like the others.
    ("GET", "/console/config.json", "under /console/{proxy+}"),
];

/// The API document's routes, as `(METHOD, /path)`, read by indentation: a path two spaces
/// in, its methods four.
fn openapi_routes() -> BTreeSet<(String, String)> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml"))
        .expect("openapi.yaml");
    let mut routes = BTreeSet::new();
    let mut path: Option<String> = None;
    for line in spec.lines() {
        if let Some(p) = line.strip_prefix("  /").and_then(|p| p.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if !line.starts_with("    ") && !line.trim().is_empty() {
            path = None;
        } else if let (Some(p), Some(m)) = (&path, line.strip_prefix("    ")) {
            let m = m.trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete"].contains(&m) {
                routes.insert((m.to_uppercase(), p.clone()));
            }
        }
    }
    assert!(routes.len() >= 30, "openapi.yaml read wrongly: {routes:?}");
    routes
}

/// A route the code serves but the stack does not route answers API Gateway's 404 on AWS
/// while every local test passes: `PATCH /me`, `/agents` and `/reports/sla` once did. So
/// the stack routes every route of the API document (but the listed ones), to a function
/// whose code names that path, and nothing the document leaves out but the console's
/// files.
#[test]
fn the_stack_routes_every_route_of_the_api_document_to_a_function_that_serves_it() {
    let t = Template::load();
    let mut routed = BTreeSet::new();
    for f in t.resources_of_type("AWS::Serverless::Function") {
        let events = f.http_events();
        if events.is_empty() {
            continue;
        }
        let code = f
            .prop("CodeUri")
            .expect("a function with routes has its code");
        let mut sources = String::new();
        for dir in [format!("{code}/src"), "shared/src".into(), "web/src".into()] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
            for entry in walk_rs(&dir) {
                sources.push_str(&std::fs::read_to_string(entry).unwrap());
            }
        }
        for e in events {
            // API Gateway's greedy `{proxy+}` is axum's `{*name}`.
            let named = match e.path.strip_suffix("{proxy+}") {
                Some(prefix) => format!("\"{prefix}{{*"),
                None => format!("\"{}\"", e.path),
            };
            assert!(
                sources.contains(&named),
                "{} {} is routed to {}, whose code never names that path",
                e.method,
                e.path,
                f.name
            );
            routed.insert((e.method, e.path));
        }
    }
    let documented = openapi_routes();
    for (m, p) in &documented {
        let skipped = NOT_ROUTED_ON_AWS
            .iter()
            .any(|(sm, sp, _)| sm == m && sp == p);
        assert!(
            routed.contains(&(m.clone(), p.clone())) || skipped,
            "{m} {p} is in openapi.yaml but the stack does not route it: on AWS it would \
             answer 404. Add an HttpApi event to the function that serves it."
        );
    }
    for (m, p) in &routed {
        assert!(
            documented.contains(&(m.clone(), p.clone())) || p.starts_with("/console"),
            "{m} {p} is routed but not in openapi.yaml"
        );
    }
}

/// The `.rs` files under `dir`.
fn walk_rs(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk_rs(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
    found
}

/// A DynamoDB event reads its table's stream: `!GetAtt T.StreamArn` exists only when `T`
/// declares a `StreamSpecification`, under the condition its reader is made under (or none).
/// cfn-lint passes a stream on the wrong table; CloudFormation fails the deploy only once it
/// reaches the event, after the OpenSearch domain was made. It once did for the indexer's.
#[test]
fn each_stream_a_function_reads_is_declared_on_its_table_under_the_same_condition() {
    let t = Template::load();
    let mut streams = 0;
    for f in t.resources_of_type("AWS::Serverless::Function") {
        for line in f.text().lines() {
            let Some(table) = line
                .trim()
                .strip_prefix("Stream: !GetAtt ")
                .and_then(|v| v.strip_suffix(".StreamArn"))
            else {
                continue;
            };
            streams += 1;
            let spec = t
                .resource(table)
                .prop("StreamSpecification")
                .unwrap_or_else(|| {
                    panic!(
                        "{} reads {table}'s stream, which the table does not declare",
                        f.name
                    )
                });
            if let Some(condition) = spec.strip_prefix("!If [").and_then(|v| v.split(',').next()) {
                assert_eq!(
                    f.prop("Condition").as_deref(),
                    Some(condition.trim()),
                    "{} reads {table}'s stream, which exists only under {condition}",
                    f.name
                );
            }
        }
    }
    assert_eq!(streams, 2, "the tickets' and the articles' streams");
    // And no table streams what no function reads (the customers' did, for nothing).
    let text = template_text();
    for table in t.resources_of_type("AWS::DynamoDB::Table") {
        if table.prop("StreamSpecification").is_some() {
            assert!(
                text.contains(&format!("Stream: !GetAtt {}.StreamArn", table.name)),
                "{} streams its changes, but no function reads them",
                table.name
            );
        }
    }
}

/// CloudWatch cannot publish to a topic encrypted with SNS's AWS-managed key: every alarm's
/// notice would fail, seen only in the alarm's history.
#[test]
fn the_alarms_can_reach_their_topic() {
    let t = Template::load();
    let topic = t.resource("AlarmTopic");
    assert!(
        !topic.text().contains("alias/aws/sns"),
        "AlarmTopic must not use the AWS-managed SNS key"
    );
    assert!(
        template_text()
            .matches("AlarmActions: [!Ref AlarmTopic]")
            .count()
            >= 3
    );
}

fn template_text() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml")).unwrap()
}

/// Lambda's own log group for a function keeps its logs for ever; each function logs to a
/// group of the stack's that keeps them `LogRetentionDays`, made under the function's own
/// condition.
#[test]
fn each_function_logs_to_a_group_of_its_own_that_expires() {
    let t = Template::load();
    let mut groups = BTreeSet::new();
    for f in t.resources_of_type("AWS::Serverless::Function") {
        let config = f
            .prop("LoggingConfig")
            .unwrap_or_else(|| panic!("{} logs to Lambda's default group", f.name));
        let group = config
            .split("!Ref ")
            .nth(1)
            .and_then(|rest| rest.split('}').next())
            .map(str::trim)
            .unwrap_or_else(|| panic!("{}: {config}", f.name));
        let g = t.resource(group);
        assert_eq!(g.prop("Type").as_deref(), Some("AWS::Logs::LogGroup"));
        assert_eq!(
            g.prop("RetentionInDays").as_deref(),
            Some("!Ref LogRetentionDays"),
            "{group}"
        );
        assert_eq!(g.prop("Condition"), f.prop("Condition"), "{group}");
        assert!(groups.insert(group.to_string()), "{group} is shared");
    }
    assert_eq!(groups.len(), 9);
}

/// CloudFormation updates the console's Cognito app client in place when its properties
/// change in a later template, and the update puts back the template's placeholder callback
/// URL. The custom resource that sets the real one runs only when its own properties change,
/// so it carries a digest of the client's: a change to the client changes the digest, and
/// the callback is set again after the client's update.
#[test]
fn a_change_to_the_console_client_sets_its_callback_again() {
    use sha2::{Digest, Sha256};
    let t = Template::load();
    let client: Vec<String> = t
        .resource("ConsoleClient")
        .text()
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect();
    let digest = hex::encode(Sha256::digest(client.join("\n").as_bytes()))[..16].to_string();
    assert_eq!(
        t.resource("ConsoleCallback").prop("ClientSettings"),
        Some(format!("\"{digest}\"")),
        "ConsoleClient changed: set ConsoleCallback's ClientSettings to \"{digest}\", so that \
         an update of the client is followed by its callback URL set again"
    );
}
