//! Who is calling the agent API. Locally, agents are configured tokens; on AWS a JWT
//! authorizer stands in front and passes the agent's name and role on.

use crate::Deps;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use helpdesk_core::http::bearer_token;
use helpdesk_core::{Error, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Agent,
    Supervisor,
    Admin,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agent {
    pub name: String,
    pub role: Role,
}

impl Agent {
    /// Refuses with 403 unless the agent has at least `role`.
    pub fn require(&self, role: Role) -> Result<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(Error::forbidden(format!(
                "{} may not do this; it needs the {role:?} role",
                self.name
            )))
        }
    }
}

/// The signed-in agent, as a handler argument: a request without a valid agent token (or
/// verified authorizer claims) is answered 401 before the handler runs.
impl FromRequestParts<Arc<Deps>> for Agent {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, deps: &Arc<Deps>) -> Result<Agent> {
        deps.agents.authenticate(&parts.headers)
    }
}

/// A signed-in agent with at least the supervisor role; 403 for other agents.
pub struct Supervisor(pub Agent);

impl FromRequestParts<Arc<Deps>> for Supervisor {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, deps: &Arc<Deps>) -> Result<Supervisor> {
        let agent = Agent::from_request_parts(parts, deps).await?;
        agent.require(Role::Supervisor)?;
        Ok(Supervisor(agent))
    }
}

/// Headers the Lambda wiring sets from the JWT authorizer's verified claims, after
/// removing any a client sent. Only an `Agents` built with [`Agents::trusting_authorizer`]
/// reads them.
pub const AGENT_HEADER: &str = "x-helpdesk-agent";
pub const ROLE_HEADER: &str = "x-helpdesk-role";

/// Who the verified claims of a JWT say the agent is. With Cognito (the stack's own user
/// pool), the agent is the `sub`, which the user cannot change, and the role is the highest
/// of the `cognito:groups` (`admin`, `supervisor`, `agent`; `agent` for none). With another
/// issuer, the name is the `email` when the issuer says it is verified (`email_verified`),
/// else the `sub`, and the role the `helpdesk_role` claim (`agent` when absent). Never the
/// `preferred_username`, nor an email not verified: many issuers let a user change those,
/// and one who set a colleague's would become them (their tickets, their "me"). `None`
/// when the claims name nobody.
pub fn agent_from_claims(claim: impl Fn(&str) -> Option<String>) -> Option<Agent> {
    let nonempty = |k: &str| claim(k).filter(|v| !v.trim().is_empty());
    if let Some(groups) = nonempty("cognito:groups") {
        let role = cognito_groups(&groups)
            .filter_map(Role::parse)
            .max()
            .unwrap_or(Role::Agent);
        return nonempty("sub").map(|name| Agent { name, role });
    }
    let verified = nonempty("email_verified").is_some_and(|v| v.trim() == "true");
    let name = nonempty("email")
        .filter(|_| verified)
        .or_else(|| nonempty("sub"))?;
    let role = nonempty("helpdesk_role")
        .and_then(|r| Role::parse(&r))
        .unwrap_or(Role::Agent);
    Some(Agent { name, role })
}

/// API Gateway passes a list claim as `[a b]`; other callers as JSON or comma-separated.
fn cognito_groups(raw: &str) -> impl Iterator<Item = &str> {
    raw.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split([' ', ','])
        .map(|g| g.trim().trim_matches('"'))
        .filter(|g| !g.is_empty())
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text.trim().to_lowercase().as_str() {
            "agent" => Some(Role::Agent),
            "supervisor" => Some(Role::Supervisor),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

struct Credential {
    agent: Agent,
    token_digest: [u8; 32],
}

/// The configured tokens.
#[derive(Default)]
pub struct Agents {
    credentials: Vec<Credential>,
    trust_authorizer: bool,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Agents {
    /// `admin_token` is `HELPDESK_ADMIN_TOKEN`; `spec` is `HELPDESK_AGENTS`, a comma-separated
    /// list of `name:role:token` (role `agent` or `supervisor`).
    pub fn parse(admin_token: Option<&str>, spec: Option<&str>) -> Result<Agents> {
        let agents = Agents::parse_agents(spec)?;
        Ok(match admin_token {
            Some(token) => agents.with_admin(token),
            None => agents,
        })
    }

    /// `HELPDESK_AGENTS` alone: `helpdesk serve` checks it before it makes (and prints) an
    /// admin token, then adds that token with [`Agents::with_admin`].
    pub fn parse_agents(spec: Option<&str>) -> Result<Agents> {
        let mut agents = Agents::default();
        for entry in spec
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let mut parts = entry.splitn(3, ':');
            let (Some(name), Some(role), Some(token)) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(Error::bad_request(
                    "invalid_config",
                    format!(
                        "HELPDESK_AGENTS entry {name:?} is not name:role:token",
                        name = entry.split(':').next().unwrap_or("")
                    ),
                ));
            };
            let role = Role::parse(role).ok_or_else(|| {
                Error::bad_request(
                    "invalid_config",
                    format!("HELPDESK_AGENTS: unknown role {role:?} for {name}"),
                )
            })?;
            if name.is_empty() || token.len() < 8 {
                return Err(Error::bad_request(
                    "invalid_config",
                    format!("HELPDESK_AGENTS: {name:?} needs a name and a token of 8 characters or more"),
                ));
            }
            agents.add(name, role, token);
        }
        Ok(agents)
    }

    /// Adds the administrator's token (an empty one gives no administrator). It is tried
    /// before the agents' tokens.
    pub fn with_admin(mut self, token: &str) -> Agents {
        if !token.is_empty() {
            self.add("admin", Role::Admin, token);
            self.credentials.rotate_right(1);
        }
        self
    }

    pub fn add(&mut self, name: &str, role: Role, token: &str) {
        self.credentials.push(Credential {
            agent: Agent {
                name: name.to_string(),
                role,
            },
            token_digest: digest(token),
        });
    }

    /// The agents the tokens name (not the admin token): the desk makes each a default
    /// profile at start, so that it assigns to them before anyone signs in.
    pub fn configured(&self) -> impl Iterator<Item = &Agent> {
        self.credentials
            .iter()
            .map(|c| &c.agent)
            .filter(|a| a.role != Role::Admin)
    }

    /// Whether a token names `id` as an administrator (the admin token's `admin`). An
    /// administrator takes no tickets, so no route may give them a profile. On AWS an
    /// administrator is known only by the claims of their own requests.
    pub fn is_admin(&self, id: &str) -> bool {
        self.credentials
            .iter()
            .any(|c| c.agent.role == Role::Admin && c.agent.name == id)
    }

    /// Whether `id` is surely nobody: locally the tokens name every agent, so a profile for
    /// another id would be an assignee no one can sign in as. Behind the authorizer (AWS)
    /// any id may be an agent who has not signed in yet, so none is unknown.
    pub fn is_unknown(&self, id: &str) -> bool {
        !self.trust_authorizer && !self.credentials.iter().any(|c| c.agent.name == id)
    }

    pub fn is_empty(&self) -> bool {
        self.credentials.is_empty() && !self.trust_authorizer
    }

    /// Behind API Gateway's JWT authorizer: the agent is who the verified claims say, as
    /// the Lambda wiring put them in [`AGENT_HEADER`] and [`ROLE_HEADER`].
    pub fn trusting_authorizer(mut self) -> Agents {
        self.trust_authorizer = true;
        self
    }

    /// The agent whose token the request carries; 401 otherwise.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Agent> {
        if self.trust_authorizer {
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::trim)
            };
            if let Some(name) = header(AGENT_HEADER).filter(|n| !n.is_empty()) {
                let role = header(ROLE_HEADER)
                    .and_then(Role::parse)
                    .unwrap_or(Role::Agent);
                return Ok(Agent {
                    name: name.to_string(),
                    role,
                });
            }
        }
        let token = bearer_token(headers).ok_or_else(|| {
            Error::unauthorized("send an agent token as 'Authorization: Bearer <token>'")
        })?;
        let presented = digest(token);
        let mut found = None;
        // Compare against every credential, so timing does not tell which matched.
        for c in &self.credentials {
            if bool::from(c.token_digest.ct_eq(&presented)) {
                found = Some(c.agent.clone());
            }
        }
        found.ok_or_else(|| Error::unauthorized("unknown agent token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[test]
    fn tokens_map_to_agents_and_roles() {
        let agents = Agents::parse(
            Some("root-token"),
            Some("alice:agent:alice-token, bob:supervisor:bob-token"),
        )
        .unwrap();
        assert_eq!(
            agents.authenticate(&headers("alice-token")).unwrap().name,
            "alice"
        );
        let bob = agents.authenticate(&headers("bob-token")).unwrap();
        assert!(bob.require(Role::Supervisor).is_ok());
        assert!(bob.require(Role::Admin).is_err());
        assert_eq!(
            agents.authenticate(&headers("root-token")).unwrap().role,
            Role::Admin
        );
        assert_eq!(
            agents
                .authenticate(&headers("nope"))
                .unwrap_err()
                .kind
                .status(),
            401
        );
        assert_eq!(
            agents
                .authenticate(&HeaderMap::new())
                .unwrap_err()
                .kind
                .status(),
            401
        );
        assert!(!agents.is_unknown("alice") && !agents.is_unknown("admin"));
        assert!(agents.is_unknown("carol"));
        assert!(!agents.trusting_authorizer().is_unknown("carol"));
        assert!(Agents::parse(None, Some("carol:boss:carol-token")).is_err());
        assert!(Agents::parse(None, Some("carol")).is_err());
    }

    #[test]
    fn cognito_agents_are_their_sub_with_the_highest_group() {
        let claims = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let wang = agent_from_claims(claims(&[
            ("sub", "5f1c-uuid"),
            ("email", "wang@example.com"),
            ("cognito:groups", "[agent supervisor]"),
        ]))
        .unwrap();
        assert_eq!(wang.name, "5f1c-uuid");
        assert_eq!(wang.role, Role::Supervisor);
        let json =
            agent_from_claims(claims(&[("sub", "a"), ("cognito:groups", r#"["admin"]"#)])).unwrap();
        assert_eq!(json.role, Role::Admin);
        // A group the desk does not know gives no rights beyond an agent's.
        let other =
            agent_from_claims(claims(&[("sub", "b"), ("cognito:groups", "[admins2]")])).unwrap();
        assert_eq!(other.role, Role::Agent);
        // Another issuer: a verified email names the agent, else the `sub`; a name the
        // user may set (`preferred_username`, an email not verified) never does.
        let own = agent_from_claims(claims(&[
            ("sub", "c"),
            ("preferred_username", "li"),
            ("email", "li@example.com"),
            ("email_verified", "true"),
            ("helpdesk_role", "supervisor"),
        ]))
        .unwrap();
        assert_eq!(
            (own.name.as_str(), own.role),
            ("li@example.com", Role::Supervisor)
        );
        let unverified: [&'static [(&str, &str)]; 3] = [
            &[("sub", "d"), ("preferred_username", "li")],
            &[("sub", "d"), ("email", "li@example.com")],
            &[
                ("sub", "d"),
                ("email", "li@example.com"),
                ("email_verified", "false"),
            ],
        ];
        for pairs in unverified {
            assert_eq!(agent_from_claims(claims(pairs)).unwrap().name, "d");
        }
        assert!(agent_from_claims(claims(&[("cognito:groups", "[agent]")])).is_none());
    }

    #[test]
    fn authorizer_headers_count_only_when_trusted() {
        let mut h = HeaderMap::new();
        h.insert(AGENT_HEADER, axum::http::HeaderValue::from_static("wang"));
        h.insert(ROLE_HEADER, "supervisor".parse().unwrap());
        assert_eq!(
            Agents::default()
                .authenticate(&h)
                .unwrap_err()
                .kind
                .status(),
            401
        );
        let agent = Agents::default()
            .trusting_authorizer()
            .authenticate(&h)
            .unwrap();
        assert_eq!(agent.role, Role::Supervisor);
    }
}
