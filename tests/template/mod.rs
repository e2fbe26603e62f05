//! Reads `template.yaml` as the tests need it, by indentation: its resources, their
//! properties, the statements of their policies, their environment and their events. No
//! YAML library is a dependency; the template's own layout (two spaces a level, flow lists
//! for actions and short resource lists) is what this reads, and a test that finds
//! nothing fails rather than passing.
#![allow(dead_code)]

use std::collections::BTreeMap;

pub struct Template {
    lines: Vec<String>,
}

pub struct Resource {
    pub name: String,
    /// The resource's lines below its name.
    lines: Vec<String>,
}

/// One policy statement, its values as written (`!GetAtt X.Arn` as `X.Arn`, `!Sub "s"` as
/// `s`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statement {
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub principals: Vec<String>,
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

fn is_blank(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with('#')
}

/// The lines below `lines[at]` that are indented deeper than it.
fn block(lines: &[String], at: usize) -> Vec<String> {
    let base = indent(&lines[at]);
    lines[at + 1..]
        .iter()
        .take_while(|l| is_blank(l) || indent(l) > base)
        .filter(|l| !is_blank(l))
        .cloned()
        .collect()
}

/// A scalar as written: `!GetAtt X.Arn` as `X.Arn`, `!Sub "s"` and `!Ref X` as their
/// argument, quotes removed.
pub fn scalar(v: &str) -> String {
    let v = v.trim();
    let v = v
        .strip_prefix("!GetAtt ")
        .or_else(|| v.strip_prefix("!Sub "))
        .unwrap_or(v)
        .trim();
    v.trim_matches('"').trim_matches('\'').to_string()
}

/// The items of a flow list `[a, "b", !Sub "c"]` (commas inside brackets or quotes kept),
/// or a single value as a list of one.
pub fn flow_list(v: &str) -> Vec<String> {
    let v = v.trim();
    let Some(inner) = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) else {
        return if v.is_empty() {
            Vec::new()
        } else {
            vec![scalar(v)]
        };
    };
    let mut items = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '[' | '{' if !quoted => depth += 1,
            ']' | '}' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                items.push(scalar(&inner[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    if !inner[start..].trim().is_empty() {
        items.push(scalar(&inner[start..]));
    }
    items
}

impl Template {
    pub fn load() -> Template {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/template.yaml");
        let text = std::fs::read_to_string(path).expect("template.yaml");
        Template {
            lines: text.lines().map(str::to_string).collect(),
        }
    }

    fn top(&self, section: &str) -> Vec<String> {
        let at = self
            .lines
            .iter()
            .position(|l| l == &format!("{section}:"))
            .unwrap_or_else(|| panic!("template.yaml has no {section} section"));
        block(&self.lines, at)
    }

    pub fn resources(&self) -> Vec<Resource> {
        let lines = self.top("Resources");
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if indent(l) == 2 {
                if let Some(name) = l.trim().strip_suffix(':') {
                    out.push(Resource {
                        name: name.to_string(),
                        lines: block(&lines, i),
                    });
                }
            }
        }
        assert!(out.len() > 10, "template.yaml's resources were not found");
        out
    }

    pub fn resource(&self, name: &str) -> Resource {
        self.resources()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("template.yaml has no resource {name}"))
    }

    pub fn resources_of_type(&self, kind: &str) -> Vec<Resource> {
        self.resources()
            .into_iter()
            .filter(|r| r.prop("Type").as_deref() == Some(kind))
            .collect()
    }

    /// A parameter's `key: value` lines (`Type`, `Default`, `AllowedValues`).
    pub fn parameter(&self, name: &str) -> BTreeMap<String, String> {
        let params = self.top("Parameters");
        let at = params
            .iter()
            .position(|l| indent(l) == 2 && l.trim() == format!("{name}:"))
            .unwrap_or_else(|| panic!("template.yaml has no parameter {name}"));
        pairs(&block(&params, at))
    }

    /// A condition's definition as written.
    pub fn condition(&self, name: &str) -> String {
        let prefix = format!("{name}:");
        self.top("Conditions")
            .iter()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("template.yaml has no condition {name}"))
    }

    /// The variables every function gets (`Globals.Function.Environment.Variables`).
    pub fn global_env(&self) -> BTreeMap<String, String> {
        let globals = self.top("Globals");
        let at = globals
            .iter()
            .position(|l| l.trim() == "Variables:")
            .expect("Globals has Environment.Variables");
        pairs(&block(&globals, at))
    }

    /// The variables a function gets: the global ones, with its own over them.
    pub fn function_env(&self, function: &str) -> BTreeMap<String, String> {
        let mut vars = self.global_env();
        vars.extend(self.resource(function).env());
        vars
    }

    /// Everything a function's role is granted: its `Policies` statements (those under an
    /// `!If` counted as granted) and the SAM policy templates it uses, expanded
    /// ([`sam_policy`]).
    pub fn grants(&self, function: &str) -> Vec<Statement> {
        let resource = self.resource(function);
        let (mut statements, _) = resource.policies();
        for (name, args) in resource.sam_policies() {
            statements.push(sam_policy(&name, &args).unwrap_or_else(|| {
                panic!(
                    "{function} uses the SAM policy template {name}, which the tests do not \
                     know: add its statement to sam_policy from SAM's policy_templates.json"
                )
            }));
        }
        statements
    }
}

/// The statement of a SAM policy template, with its argument (`{QueueName: !GetAtt
/// InboundQueue.QueueName}`) put in, resources named as the template's statements name
/// them (`InboundQueue.Arn`). Only the templates the template uses, each copied from SAM's
/// own definitions (samtranslator/policy_templates_data/policy_templates.json in
/// aws/serverless-application-model); `None` for the others.
pub fn sam_policy(name: &str, args: &str) -> Option<Statement> {
    match name {
        // `sqs:SendMessage*` on `arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}`,
        // the queue's ARN.
        "SQSSendMessagePolicy" => {
            let queue = args
                .split("QueueName:")
                .nth(1)?
                .trim()
                .trim_end_matches('}')
                .trim();
            let queue = scalar(queue);
            let logical = queue.strip_suffix(".QueueName")?;
            Some(Statement {
                actions: vec!["sqs:SendMessage*".into()],
                resources: vec![format!("{logical}.Arn")],
                principals: Vec::new(),
            })
        }
        _ => None,
    }
}

/// The resource a variable's value names: `!Ref X` as `X`.
pub fn ref_of(value: &str) -> Option<String> {
    value
        .trim()
        .strip_prefix("!Ref ")
        .map(|r| r.trim().to_string())
}

/// The SSM parameter a `*_PARAM` variable names, in `${...}` form: `!Sub
/// "${ChannelSecretsPath}name"` as written, `!Ref P` or `!If [C, !Ref P, ""]` as `${P}`.
pub fn parameter_of_env(value: &str) -> Option<String> {
    let value = value.trim();
    if let Some(sub) = value.strip_prefix("!Sub ") {
        return Some(sub.trim().trim_matches('"').to_string());
    }
    if let Some(p) = value.strip_prefix("!Ref ") {
        return Some(format!("${{{}}}", p.trim()));
    }
    let inner = value.strip_prefix("!If [")?.strip_suffix(']')?;
    let p = inner.split(',').nth(1)?.trim().strip_prefix("!Ref ")?;
    Some(format!("${{{}}}", p.trim()))
}

/// `key: value` lines one level deep, as a map.
fn pairs(lines: &[String]) -> BTreeMap<String, String> {
    let Some(base) = lines.first().map(|l| indent(l)) else {
        return BTreeMap::new();
    };
    lines
        .iter()
        .filter(|l| indent(l) == base)
        .filter_map(|l| l.trim().split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

impl Resource {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// A property written on one line, at the resource's top level (`Type`, `Condition`)
    /// or under `Properties`.
    pub fn prop(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}:");
        self.lines
            .iter()
            .filter(|l| indent(l) == 4 || indent(l) == 6)
            .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    }

    /// The first `key: value` at any depth of the resource, e.g. `DefaultAuthorizer` under
    /// `Properties.Auth`.
    pub fn find(&self, key: &str) -> Option<String> {
        let prefix = format!("{key}:");
        self.lines
            .iter()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(|v| v.trim().to_string()))
            .filter(|v| !v.is_empty())
    }

    /// The lines below the property `key` of `Properties` (six spaces in).
    fn section(&self, key: &str) -> Vec<String> {
        match self
            .lines
            .iter()
            .position(|l| indent(l) == 6 && l.trim() == format!("{key}:"))
        {
            Some(at) => block(&self.lines, at),
            None => Vec::new(),
        }
    }

    /// The function's own environment variables.
    pub fn env(&self) -> BTreeMap<String, String> {
        let env = self.section("Environment");
        match env.iter().position(|l| l.trim() == "Variables:") {
            Some(at) => pairs(&block(&env, at)),
            None => BTreeMap::new(),
        }
    }

    /// The statements of a function's `Policies`, and the names of the SAM policy
    /// templates it uses.
    pub fn policies(&self) -> (Vec<Statement>, Vec<String>) {
        let lines = self.section("Policies");
        let sam = lines
            .iter()
            .filter(|l| indent(l) == 8)
            .filter_map(|l| l.trim().strip_prefix("- "))
            .filter_map(|l| l.split_once(':').map(|(k, _)| k.trim().to_string()))
            .filter(|k| k != "Statement" && k != "!If")
            .collect();
        (statements(&lines), sam)
    }

    /// The SAM policy templates of a function's `Policies`, each with its arguments as
    /// written (`SQSSendMessagePolicy`, `{QueueName: !GetAtt InboundQueue.QueueName}`).
    pub fn sam_policies(&self) -> Vec<(String, String)> {
        self.section("Policies")
            .iter()
            .filter(|l| indent(l) == 8)
            .filter_map(|l| l.trim().strip_prefix("- "))
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .filter(|(k, _)| k != "Statement" && k != "!If")
            .collect()
    }

    /// The statements of an OpenSearch domain's `AccessPolicies`.
    pub fn access_policy(&self) -> Vec<Statement> {
        statements(&self.section("AccessPolicies"))
    }

    /// The HTTP API events of a function: (name, method, path, authorizer as written).
    pub fn http_events(&self) -> Vec<HttpEvent> {
        let lines = self.section("Events");
        let Some(base) = lines.first().map(|l| indent(l)) else {
            return Vec::new();
        };
        let mut events = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if indent(l) != base {
                continue;
            }
            let Some((name, rest)) = l.trim().split_once(':') else {
                continue;
            };
            // Either `Name: {Type: HttpApi, Properties: {...}}` or a block below.
            let text = if rest.trim().is_empty() {
                block(&lines, i).join(" ")
            } else {
                rest.to_string()
            };
            if !text.contains("HttpApi") {
                continue;
            }
            let field = |key: &str| -> Option<String> {
                let at = text.find(&format!("{key}:"))? + key.len() + 1;
                let rest = text[at..].trim_start();
                if let Some(quoted) = rest.strip_prefix('"') {
                    return quoted.split('"').next().map(str::to_string);
                }
                let end = rest.find([',', '}']).unwrap_or(rest.len());
                Some(scalar(&rest[..end]))
            };
            events.push(HttpEvent {
                name: name.trim().to_string(),
                method: field("Method").unwrap_or_default(),
                path: field("Path").unwrap_or_default(),
                authorizer: field("Authorizer"),
            });
        }
        events
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpEvent {
    pub name: String,
    pub method: String,
    pub path: String,
    pub authorizer: Option<String>,
}

/// Reads the statements of a policy block: each begins at `Effect:`, and holds `Action`,
/// `Resource` and `Principal` (`AWS:`), each inline or as a list below.
fn statements(lines: &[String]) -> Vec<Statement> {
    let mut out: Vec<Statement> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim().trim_start_matches("- ").trim();
        if line.starts_with("Effect:") {
            out.push(Statement::default());
        }
        let Some(current) = out.last_mut() else {
            i += 1;
            continue;
        };
        for (key, target) in [
            ("Action:", &mut current.actions),
            ("Resource:", &mut current.resources),
            ("AWS:", &mut current.principals),
        ] {
            if let Some(v) = line.strip_prefix(key) {
                if v.trim().is_empty() {
                    // A list below: `- item` lines, or a `!Sub` with its arguments.
                    let below = block(lines, i);
                    let base = below.first().map(|l| indent(l)).unwrap_or(0);
                    for item in below.iter().filter(|l| indent(l) == base) {
                        let item = item.trim().trim_start_matches("- ").trim();
                        if item == "!Sub" {
                            // `- !Sub` then `- "string"` and `- {vars}`: the string.
                            let args: Vec<&String> =
                                below.iter().filter(|l| indent(l) > base).collect();
                            if let Some(s) = args.first() {
                                target.push(scalar(s.trim().trim_start_matches("- ")));
                            }
                        } else {
                            target.push(scalar(item));
                        }
                    }
                } else {
                    target.extend(flow_list(v));
                }
            }
        }
        i += 1;
    }
    out
}
