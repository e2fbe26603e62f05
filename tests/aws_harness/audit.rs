//! What each function process may call on AWS, checked against `template.yaml` while the
//! real binaries run. The emulator enforces no IAM, so a call the template does not grant
//! passes every test here and fails on AWS; this audit closes that gap.
//!
//! Each [`super::Runtime`] puts its own recording proxy in front of the emulator (the
//! process's `AWS_ENDPOINT_URL`, which its DynamoDB, SQS and SSM clients all use) and, when
//! the process has one, in front of its OpenSearch domain (`OPENSEARCH_URL`). Every request
//! is noted as the IAM action it needs and what it acts on, as IAM checks it: a DynamoDB
//! transaction needs each item's own action (`PutItem`, `UpdateItem`, `DeleteItem`,
//! `ConditionCheckItem`) on that item's table, a query on an index needs the action on
//! `${Table.Arn}/index/NAME`, an SQS batch needs the action of one message. When the
//! runtime goes, each call is mapped to the template's resource through the environment
//! (the process's `OUTBOUND_QUEUE_URL` is the template's `OUTBOUND_QUEUE_URL: !Ref
//! OutboundQueue` for that function) and must be granted by the function's `Policies` (or,
//! for OpenSearch, by the domain's access policy naming the function's role).
//!
//! What SAM adds to a role for its event sources is not counted as a grant of the
//! function's own calls (samtranslator/model/eventsources/pull.py): the managed execution
//! role of an SQS or DynamoDB-stream trigger (`AWSLambdaSQSQueueExecutionRole`,
//! `AWSLambdaDynamoDBExecutionRole`) is for the calls Lambda's poller makes, which the
//! process never makes, and the send to a trigger's `OnFailure` SQS destination is Lambda's
//! too. A call the function itself makes must be in its own `Policies`.

use super::template::{parameter_of_env, ref_of, Statement, Template};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

/// One AWS call as IAM sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Call {
    /// The action it needs, e.g. `dynamodb:GetItem`.
    pub action: String,
    pub on: On,
}

/// What a call acts on, as the request names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum On {
    Table(String),
    /// A table's index: (table, index).
    Index(String, String),
    /// A queue, by its URL.
    Queue(String),
    /// An SSM parameter, by its name.
    Parameter(String),
    /// A path on the OpenSearch domain.
    Domain(String),
    /// A request the audit cannot read; never granted.
    Unread(String),
}

impl std::fmt::Display for On {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            On::Table(t) => write!(f, "table {t}"),
            On::Index(t, i) => write!(f, "index {i} of table {t}"),
            On::Queue(q) => write!(f, "queue {q}"),
            On::Parameter(p) => write!(f, "parameter {p}"),
            On::Domain(p) => write!(f, "OpenSearch path {p}"),
            On::Unread(what) => write!(f, "a request the audit cannot read ({what})"),
        }
    }
}

#[derive(Clone, Copy)]
enum Upstream {
    /// The emulator: DynamoDB, SQS and SSM.
    Aws,
    /// An OpenSearch domain.
    OpenSearch,
}

struct Recorder {
    upstream: String,
    kind: Upstream,
    client: reqwest::Client,
    calls: Arc<Mutex<BTreeSet<Call>>>,
}

/// The recording proxies of one function process, and what they saw.
pub struct Audit {
    /// The binary's name (`auto-reply`).
    pub binary: String,
    env: HashMap<String, String>,
    calls: Arc<Mutex<BTreeSet<Call>>>,
    /// The variables that send the process through the proxies.
    endpoints: Vec<(String, String)>,
}

/// The template's function for a binary: `auto-reply` → `AutoReplyFunction`.
pub fn function_of(binary: &str) -> String {
    let mut name: String = binary
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect();
    name.push_str("Function");
    name
}

async fn proxy(upstream: &str, kind: Upstream, calls: &Arc<Mutex<BTreeSet<Call>>>) -> String {
    let recorder = Arc::new(Recorder {
        upstream: upstream.trim_end_matches('/').to_string(),
        kind,
        client: reqwest::Client::new(),
        calls: calls.clone(),
    });
    let app = axum::Router::new().fallback(forward).with_state(recorder);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

impl Audit {
    /// Starts the proxies for the process of `binary` that runs with `env`.
    pub async fn start(binary: &str, env: &HashMap<String, String>) -> Audit {
        // Fails early for a binary the template does not have.
        Template::load().resource(&function_of(binary));
        let calls = Arc::new(Mutex::new(BTreeSet::new()));
        let aws = env
            .get("AWS_ENDPOINT_URL")
            .cloned()
            .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
            .expect("the emulator's address (AWS_ENDPOINT_URL)");
        let mut endpoints = vec![(
            "AWS_ENDPOINT_URL".to_string(),
            proxy(&aws, Upstream::Aws, &calls).await,
        )];
        if let Some(domain) = env.get("OPENSEARCH_URL").filter(|u| !u.trim().is_empty()) {
            endpoints.push((
                "OPENSEARCH_URL".to_string(),
                proxy(domain, Upstream::OpenSearch, &calls).await,
            ));
        }
        Audit {
            binary: binary.to_string(),
            env: env.clone(),
            calls,
            endpoints,
        }
    }

    /// No proxy and no check, for a measurement only (a cold start without the proxies'
    /// extra hop): the process reaches the emulator itself, and nothing is recorded.
    pub fn off(binary: &str, env: &HashMap<String, String>) -> Audit {
        Audit {
            binary: binary.to_string(),
            env: env.clone(),
            calls: Arc::default(),
            endpoints: Vec::new(),
        }
    }

    /// The variables to give the process, over its own: its endpoints, the proxies.
    pub fn endpoints(&self) -> &[(String, String)] {
        &self.endpoints
    }

    /// The variables to take away from the process: a service's own endpoint
    /// (`AWS_ENDPOINT_URL_DYNAMODB`) would go past the proxy.
    pub fn bypasses() -> Vec<String> {
        std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("AWS_ENDPOINT_URL_"))
            .collect()
    }

    /// Every call recorded so far.
    pub fn calls(&self) -> BTreeSet<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls recorded so far as (action, the template's resource), for a test that
    /// checks a path ran: (`dynamodb:DeleteItem`, `${IdempotencyTable.Arn}`).
    pub fn resolved(&self) -> BTreeSet<(String, String)> {
        let t = Template::load();
        let function = function_of(&self.binary);
        self.calls()
            .into_iter()
            .filter_map(|c| {
                let r = resource_of(&t, &function, &self.env, &c.on).ok()?;
                Some((c.action, r))
            })
            .collect()
    }

    /// Panics naming every call the template does not grant the function; while the
    /// thread is already panicking (another runtime's audit, or the test), only prints
    /// them, so that a test's every finding is told at once.
    pub fn assert_granted(&self) {
        let found = findings(&self.binary, &self.env, &self.calls());
        if found.is_empty() {
            return;
        }
        let report = format!(
            "AWS calls that template.yaml does not grant:\n  {}",
            found.join("\n  ")
        );
        if std::thread::panicking() {
            eprintln!("{report}");
        } else {
            panic!("{report}");
        }
    }
}

/// What is wrong with `calls` made by the process of `binary` that ran with `env`: each
/// call that the template does not grant its function, or that the audit cannot map to a
/// resource of the template.
pub fn findings(
    binary: &str,
    env: &HashMap<String, String>,
    calls: &BTreeSet<Call>,
) -> Vec<String> {
    let t = Template::load();
    let function = function_of(binary);
    let policies = t.grants(&function);
    let role = format!("{function}Role.Arn");
    let domain: Vec<Statement> = t
        .resources_of_type("AWS::OpenSearchService::Domain")
        .iter()
        .flat_map(|d| d.access_policy())
        .filter(|s| s.principals.contains(&role))
        .collect();
    let mut out = Vec::new();
    for call in calls {
        let grants = match call.on {
            On::Domain(_) => &domain,
            _ => &policies,
        };
        match resource_of(&t, &function, env, &call.on) {
            Err(why) => out.push(format!("{function}: {} on {}: {why}", call.action, call.on)),
            Ok(resource) if !granted(grants, &call.action, &resource) => out.push(format!(
                "{function}: {} on {resource} ({}): not granted{}",
                call.action,
                call.on,
                match call.on {
                    On::Domain(_) => " by the domain's access policy to the function's role",
                    _ => " by the function's Policies",
                }
            )),
            Ok(_) => {}
        }
    }
    out
}

/// Whether a statement of `grants` allows `action` on `resource` (IAM's `*` and `?`
/// wildcards; actions case-insensitive).
fn granted(grants: &[Statement], action: &str, resource: &str) -> bool {
    grants.iter().any(|s| {
        s.actions
            .iter()
            .any(|a| wildcard(&a.to_lowercase(), &action.to_lowercase()))
            && s.resources
                .iter()
                .any(|r| wildcard(&template_resource(r), resource))
    })
}

/// A statement's resource as [`resource_of`] writes it: `X.Arn` (from `!GetAtt X.Arn`) as
/// `${X.Arn}`, the rest as written.
fn template_resource(r: &str) -> String {
    if r.contains("${") || r.starts_with("arn:") || r == "*" {
        r.to_string()
    } else {
        format!("${{{r}}}")
    }
}

/// IAM's matching: `*` any run of characters, `?` any one.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // matches[j]: whether the pattern so far matches the first j characters of the text.
    let mut matches = vec![false; t.len() + 1];
    matches[0] = true;
    for c in &p {
        let mut next = vec![false; t.len() + 1];
        if *c == '*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= matches[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = matches[j - 1] && (*c == '?' || *c == t[j - 1]);
            }
        }
        matches = next;
    }
    matches[t.len()]
}

/// The template's resource a call acts on, named as its grants name it (`${TicketsTable.Arn}`,
/// `${TicketsTable.Arn}/index/by_status`, `${OutboundQueue.Arn}`,
/// `arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter${SurveySecretParameter}`):
/// through the variable of the process's environment that holds the name the call used,
/// and that variable's value in the function's environment in the template.
fn resource_of(
    t: &Template,
    function: &str,
    env: &HashMap<String, String>,
    on: &On,
) -> Result<String, String> {
    let template_env = t.function_env(function);
    // The template's value of each process variable that holds `value`.
    let holding = |value: &str| -> BTreeMap<String, Option<String>> {
        env.iter()
            .filter(|(_, v)| v.as_str() == value)
            .map(|(k, _)| (k.clone(), template_env.get(k).cloned()))
            .collect()
    };
    // The one resource of type `kind` that the variables holding `value` name.
    let logical = |value: &str, kind: &str| -> Result<String, String> {
        let vars = holding(value);
        let named: BTreeSet<String> = vars
            .values()
            .flatten()
            .filter_map(|v| ref_of(v))
            .filter(|r| t.resources_of_type(kind).iter().any(|res| &res.name == r))
            .collect();
        match named.len() {
            1 => Ok(named.into_iter().next().unwrap()),
            0 => Err(format!(
                "no variable of {function}'s environment in the template names it (the \
                 process had it from {:?})",
                vars.keys().collect::<Vec<_>>()
            )),
            _ => Err(format!(
                "the process's variables name more than one: {named:?}"
            )),
        }
    };
    match on {
        On::Table(table) => Ok(format!(
            "${{{}.Arn}}",
            logical(table, "AWS::DynamoDB::Table")?
        )),
        On::Index(table, index) => Ok(format!(
            "${{{}.Arn}}/index/{index}",
            logical(table, "AWS::DynamoDB::Table")?
        )),
        On::Queue(url) => Ok(format!("${{{}.Arn}}", logical(url, "AWS::SQS::Queue")?)),
        On::Parameter(name) => {
            let vars = holding(name);
            let named: BTreeSet<String> = vars
                .iter()
                .filter(|(k, _)| k.ends_with("_PARAM"))
                .filter_map(|(_, v)| v.as_deref().and_then(parameter_of_env))
                .collect();
            match named.len() {
                1 => Ok(format!(
                    "arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter{}",
                    named.into_iter().next().unwrap()
                )),
                0 => Err(format!(
                    "no `*_PARAM` variable of {function}'s environment in the template names \
                     it (the process had it from {:?})",
                    vars.keys().collect::<Vec<_>>()
                )),
                _ => Err(format!(
                    "the process's variables name more than one: {named:?}"
                )),
            }
        }
        On::Domain(path) => {
            let url = template_env
                .get("OPENSEARCH_URL")
                .cloned()
                .unwrap_or_default();
            if !url.contains("${KnowledgeSearch.DomainEndpoint}") {
                return Err(format!(
                    "{function}'s OPENSEARCH_URL in the template is not the KnowledgeSearch \
                     domain: {url:?}"
                ));
            }
            Ok(format!(
                "arn:${{AWS::Partition}}:es:${{AWS::Region}}:${{AWS::AccountId}}:domain/${{Name}}{path}"
            ))
        }
        On::Unread(_) => Err("the audit cannot tell what it acts on".into()),
    }
}

/// The calls one request to the emulator makes.
pub fn aws_calls(headers: &HeaderMap, body: &[u8]) -> Vec<Call> {
    let call = |action: String, on: On| Call { action, on };
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |v: &Value| v.as_str().map(str::to_string);
    if let Some((prefix, op)) = target.split_once('.') {
        if prefix.starts_with("DynamoDB_") {
            return dynamodb_calls(op, &json);
        }
        if prefix == "AmazonSQS" {
            return vec![sqs_call(op, text(&json["QueueUrl"]))];
        }
        if prefix == "AmazonSSM" {
            let names: Vec<String> = match op {
                "GetParameter" => text(&json["Name"]).into_iter().collect(),
                "GetParameters" => json["Names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(text)
                    .collect(),
                _ => Vec::new(),
            };
            if names.is_empty() {
                return vec![call(format!("ssm:{op}"), On::Unread(target.to_string()))];
            }
            return names
                .into_iter()
                .map(|n| call(format!("ssm:{op}"), On::Parameter(n)))
                .collect();
        }
        return vec![call(target.to_string(), On::Unread(target.to_string()))];
    }
    // The query protocol (SQS's older one): `Action=...&QueueUrl=...` as a form.
    let form = form_fields(body);
    let scope = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or_default();
    match (scope, form.get("Action")) {
        ("sqs", Some(op)) => vec![sqs_call(op, form.get("QueueUrl").cloned())],
        (service, op) => vec![call(
            format!("{service}:{}", op.map_or("?", |o| o.as_str())),
            On::Unread(format!("{service} {op:?}")),
        )],
    }
}

fn dynamodb_calls(op: &str, json: &Value) -> Vec<Call> {
    let call = |action: &str, on: On| Call {
        action: format!("dynamodb:{action}"),
        on,
    };
    let table = |v: &Value| v["TableName"].as_str().map(str::to_string);
    let items = json["TransactItems"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match op {
        // No action of its own: each item needs its own action on its own table.
        "TransactWriteItems" | "TransactGetItems" => items
            .iter()
            .map(|item| {
                [
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                    ("Get", "GetItem"),
                ]
                .into_iter()
                .find_map(|(key, action)| Some(call(action, On::Table(table(item.get(key)?)?))))
                .unwrap_or_else(|| call(op, On::Unread(item.to_string())))
            })
            .collect(),
        "BatchGetItem" | "BatchWriteItem" => json["RequestItems"]
            .as_object()
            .into_iter()
            .flat_map(|items| items.keys())
            .map(|t| call(op, On::Table(t.clone())))
            .collect(),
        _ => match (table(json), json["IndexName"].as_str()) {
            (Some(t), Some(index)) => vec![call(op, On::Index(t, index.to_string()))],
            (Some(t), None) => vec![call(op, On::Table(t))],
            (None, _) => vec![call(op, On::Unread(format!("DynamoDB {op}")))],
        },
    }
}

/// An SQS call: a batch needs the action of one message.
fn sqs_call(op: &str, queue_url: Option<String>) -> Call {
    let action = op.strip_suffix("Batch").unwrap_or(op);
    Call {
        action: format!("sqs:{action}"),
        on: queue_url.map_or_else(|| On::Unread(format!("SQS {op}")), On::Queue),
    }
}

/// The fields of a form body (`a=b&c=d`, percent-encoded).
fn form_fields(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn forward(State(recorder): State<Arc<Recorder>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body: Bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let path = parts.uri.path().to_string();
    let calls = match recorder.kind {
        Upstream::Aws => aws_calls(&parts.headers, &body),
        Upstream::OpenSearch => {
            let method = parts.method.as_str().to_lowercase();
            let mut chars = method.chars();
            let method: String = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            vec![Call {
                action: format!("es:ESHttp{method}"),
                on: On::Domain(path.clone()),
            }]
        }
    };
    recorder.calls.lock().unwrap().extend(calls);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut to = recorder
        .client
        .request(
            parts.method,
            format!("{}{path_and_query}", recorder.upstream),
        )
        .body(body);
    for (name, value) in &parts.headers {
        if !matches!(name.as_str(), "host" | "content-length") {
            to = to.header(name, value);
        }
    }
    let answer = match to.send().await {
        Ok(a) => a,
        Err(e) => {
            return (axum::http::StatusCode::BAD_GATEWAY, e.to_string()).into_response();
        }
    };
    let status = answer.status();
    let headers = answer.headers().clone();
    let bytes = answer.bytes().await.unwrap_or_default();
    let mut response = (status, bytes).into_response();
    let skip: [HeaderName; 3] = [
        axum::http::header::CONTENT_LENGTH,
        axum::http::header::TRANSFER_ENCODING,
        axum::http::header::CONNECTION,
    ];
    for (name, value) in &headers {
        if !skip.contains(name) {
            response.headers_mut().append(name, value.clone());
        }
    }
    response
}
