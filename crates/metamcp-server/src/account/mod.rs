//! People signing in to the gateway's web pages: single sign-on through an OpenID Provider.

pub mod oidc;
