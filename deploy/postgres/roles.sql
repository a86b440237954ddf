-- evidence-vault roles for an external PostgreSQL (>= 14). Run once as a superuser, e.g.
--   psql -v ON_ERROR_STOP=1 -f roles.sql postgres
-- then set in evault.toml:
--   [database]
--   migrate_dsn = "postgresql://evault_owner:…@db-primary/evault"   # migrations and grants only
--   dsn         = "postgresql://evault_service:…@db-primary/evault" # the running service
--   app_role    = "evault_app"
--
-- evault_owner   owns the schema and every table; used only to migrate at start.
-- evault_app     the privileges the service needs: SELECT/INSERT on ledger tables (no UPDATE,
--                DELETE or TRUNCATE, and triggers refuse them for every role anyway),
--                SELECT/INSERT/UPDATE/DELETE on working tables. Granted at every start by
--                the migrator, so new tables are covered.
-- evault_service the service's login: a member of evault_app only. It owns nothing, so it
--                cannot ALTER or DISABLE TRIGGER on any table, nor become the owner.

CREATE ROLE evault_owner LOGIN PASSWORD 'change-me-owner';
CREATE ROLE evault_app NOLOGIN;
CREATE ROLE evault_service LOGIN PASSWORD 'change-me-service' IN ROLE evault_app;
GRANT evault_app TO evault_owner;  -- lets the migrator grant to it and check grants as it
CREATE DATABASE evault OWNER evault_owner;
\connect evault
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO evault_owner;
GRANT USAGE ON SCHEMA public TO evault_app;
