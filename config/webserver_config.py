"""Flask-AppBuilder settings for Airflow's FAB auth manager (dashboard login and users).

Airflow reads this file from ``[fab] config_file`` (env AIRFLOW__FAB__CONFIG_FILE; default
``$AIRFLOW_HOME/webserver_config.py``). It is loaded with ``silent=True``: a wrong path is NOT
an error, Airflow then silently uses FAB's defaults, so check the path. Roles and what they may
do: include/cdr_reports/integration/security.py and docs/security.md.

The auth manager itself is chosen in airflow.cfg / the environment:
    AIRFLOW__CORE__AUTH_MANAGER=airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
"""

from __future__ import annotations

from flask_appbuilder.const import AUTH_DB

# Users and password hashes live in Airflow's metadata database (ab_user); create them with
# `airflow users create --role ReportViewer ...`. See below for LDAP and OAuth.
AUTH_TYPE = AUTH_DB

# No anonymous access: every UI page and API call needs a logged-in user. (Setting a role
# here, or `[fab] auth_role_public`, which wins over this, would open the dashboard to anyone.)
AUTH_ROLE_PUBLIC = None

# No self-registration: accounts are created by an Admin only.
AUTH_USER_REGISTRATION = False

AUTH_ROLE_ADMIN = "Admin"

# CSRF protection of the login and user-management forms.
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None

# Brute-force brake on the login form: at most 10 sign-in POSTs a minute per client address
# (then HTTP 429). Behind a reverse proxy every user shares the proxy's address unless
# AIRFLOW__FAB__ENABLE_PROXY_FIX=True makes Airflow trust X-Forwarded-For. This limiter only
# covers FAB's sign-in view; the JSON token endpoints (/auth/token, /auth/token/cli, FAB's
# /auth/api/v1/security/login) get the same budget of failures from the plugin's
# HttpPolicyMiddleware (include/cdr_reports/integration/http_policy/).
AUTH_RATE_LIMITED = True
AUTH_RATE_LIMIT = "10 per minute"

# Session lifetimes ([fab] session_lifetime_minutes / session_max_lifetime_minutes) and token
# lifetimes ([api_auth] jwt_expiration_time) are Airflow options, not FAB keys of this file: the
# deployment sets them as environment variables (AIRFLOW_HARDENING_ENV in
# include/cdr_reports/integration/security.py, the same values in docker-compose.yaml).

# The session cookie is never readable from JavaScript and is not sent on cross-site
# sub-requests. Behind HTTPS also set AIRFLOW__FAB__COOKIE_SECURE=True (or SESSION_COOKIE_SECURE).
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"

# ----------------------------------------------------------------------------------------------
# LDAP (Active Directory, OpenLDAP). Needs `pip install python-ldap` in the Airflow image.
# Users log in with their directory password; their FAB roles come from their LDAP groups.
# ----------------------------------------------------------------------------------------------
# import os
# from flask_appbuilder.const import AUTH_LDAP
# AUTH_TYPE = AUTH_LDAP
# AUTH_LDAP_SERVER = "ldaps://ldap.example.internal:636"
# AUTH_LDAP_USE_TLS = False                      # True for STARTTLS on ldap://
# AUTH_LDAP_SEARCH = "ou=people,dc=example,dc=internal"
# AUTH_LDAP_UID_FIELD = "uid"                    # "sAMAccountName" on Active Directory
# AUTH_LDAP_BIND_USER = "cn=airflow,ou=services,dc=example,dc=internal"
# AUTH_LDAP_BIND_PASSWORD = os.environ["AIRFLOW_LDAP_BIND_PASSWORD"]   # never inline a secret
# AUTH_LDAP_GROUP_FIELD = "memberOf"
# AUTH_USER_REGISTRATION = True                  # create the FAB user on first login...
# AUTH_USER_REGISTRATION_ROLE = "ReportViewer"   # ...with this role unless a mapping below applies
# AUTH_ROLES_SYNC_AT_LOGIN = True                # re-read the groups at every login
# AUTH_ROLES_MAPPING = {
#     "cn=cdr-report-viewers,ou=groups,dc=example,dc=internal": ["ReportViewer"],
#     "cn=cdr-report-operators,ou=groups,dc=example,dc=internal": ["ReportOperator"],
#     "cn=airflow-admins,ou=groups,dc=example,dc=internal": ["Admin"],
# }

# ----------------------------------------------------------------------------------------------
# OAuth / OpenID Connect (Keycloak, Azure AD / Entra ID, Okta, Google...). Needs `authlib`.
# The IdP's redirect URI is https://<airflow-host>/auth/oauth-authorized/<name>.
# ----------------------------------------------------------------------------------------------
# import os
# from flask_appbuilder.const import AUTH_OAUTH
# AUTH_TYPE = AUTH_OAUTH
# OAUTH_PROVIDERS = [
#     {
#         "name": "keycloak",
#         "icon": "fa-key",
#         "token_key": "access_token",
#         "remote_app": {
#             "client_id": "airflow",
#             "client_secret": os.environ["AIRFLOW_OAUTH_CLIENT_SECRET"],
#             "server_metadata_url": "https://sso.example.internal/realms/corp/.well-known/openid-configuration",
#             "api_base_url": "https://sso.example.internal/realms/corp/protocol/",  # trailing /
#             "client_kwargs": {"scope": "openid email profile"},
#         },
#     }
# ]
# AUTH_USER_REGISTRATION = True
# AUTH_USER_REGISTRATION_ROLE = "ReportViewer"
# AUTH_ROLES_SYNC_AT_LOGIN = True
# AUTH_ROLES_MAPPING = {                         # keys: the userinfo "groups" claim (a Keycloak group mapper)
#     "cdr-report-viewers": ["ReportViewer"],
#     "cdr-report-operators": ["ReportOperator"],
#     "airflow-admins": ["Admin"],
# }
