-- Least-privilege roles for tenant-restore. Run as a superuser with psql:
--
--   psql "$LIVE_ADMIN_URL" -v restore_role=tenant_restore -v restore_password='...' -v schemas=app,public \
--        -f scripts/grants.sql
--
-- On live, the restore role may read the catalog, and SELECT, INSERT and UPDATE the tenant tables and their
-- sequences. It gets no DELETE, no TRUNCATE, no DDL on live tables, and is not a superuser: a restore that tried to
-- delete anything would fail with "permission denied" (invariant I2 holds by construction, not only by care).
--
-- The scratch role (on the scratch server) is separate: see the end of this file.
--
-- Optional: -v fk_checks=postgres gives the role no SET privilege on session_replication_role (and revokes one given
-- earlier): PostgreSQL then checks FKs row by row and user triggers fire on restored rows. See the grant below for
-- what that privilege allows, and the README for what the mode costs.

\set ON_ERROR_STOP on
\if :{?fk_checks}
\else
  \set fk_checks engine
\endif

-- Passed through settings because a DO block cannot read psql variables; \o keeps the password off the terminal.
\o /dev/null
SELECT set_config('tenant_restore.role', :'restore_role', false),
       set_config('tenant_restore.password', :'restore_password', false),
       set_config('tenant_restore.schemas', :'schemas', false),
       set_config('tenant_restore.fk_checks', :'fk_checks', false);
\o

DO $grants$
DECLARE
  role_name text := current_setting('tenant_restore.role');
  schema_name text;
BEGIN
  IF current_setting('tenant_restore.fk_checks') NOT IN ('engine', 'postgres') THEN
    RAISE EXCEPTION 'fk_checks must be engine or postgres, not %', current_setting('tenant_restore.fk_checks');
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = role_name) THEN
    EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
                   role_name, current_setting('tenant_restore.password'));
  ELSE
    EXECUTE format('ALTER ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD %L',
                   role_name, current_setting('tenant_restore.password'));
  END IF;

  -- CONNECT, plus TEMPORARY: each tenant's rows are streamed with COPY into temporary staging tables (ON COMMIT
  -- DROP) before the merge, so that a conflicting key never reaches the target table half-written.
  EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), role_name);

  FOREACH schema_name IN ARRAY string_to_array(current_setting('tenant_restore.schemas'), ',') LOOP
    schema_name := trim(schema_name);
    EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', schema_name, role_name);
    -- SELECT: preflight, ownership checks, validation. INSERT: restored rows and missing parents.
    -- UPDATE: the overwrite policy, and the second pass that sets a nullable FK that broke a cycle.
    EXECUTE format('GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA %I TO %I', schema_name, role_name);
    -- Sequences are advanced past the restored ids with setval(), which needs UPDATE on the sequence.
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO %I', schema_name, role_name);
    -- Tables created later get the same grants (when created by the role running this script).
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE ON TABLES TO %I', schema_name, role_name);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', schema_name, role_name);
    -- Be explicit about what the role must never hold, in case an earlier grant gave it.
    EXECUTE format('REVOKE DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA %I FROM %I', schema_name, role_name);
  END LOOP;

  -- PostgreSQL 15+: inside one tenant's transaction the engine sets session_replication_role = replica (SET LOCAL), so
  -- that user triggers such as `last_updated` do not rewrite restored rows, without disabling them for the whole
  -- table while other tenants write. FK triggers are suspended too, so the engine runs a set-based orphan check
  -- before COMMIT. Without this grant the restore still works, but user triggers fire on restored rows (the plan
  -- command warns about it).
  --
  -- What the grant allows is wider than the engine's use of it. PostgreSQL cannot limit it to SET LOCAL: the role may
  -- SET session_replication_role = replica for a whole session (any of its sessions, on any database of this server
  -- that it can connect to: parameter privileges are cluster-wide), and ALTER ROLE <itself> SET it as the default of
  -- all its future sessions. In such a session no ordinary trigger and no rule fires, FK triggers included (only those
  -- marked ENABLE ALWAYS or ENABLE REPLICA): whoever holds the role's credentials can INSERT or UPDATE rows, in the
  -- tables this file lets it write, that reference nothing, with no audit or business trigger firing. It gives no
  -- other privilege: CHECK, NOT NULL and unique constraints, row security and the table grants above still hold.
  -- To do without it: -v fk_checks=postgres (no grant; the workers then leave FK checks to PostgreSQL by themselves),
  -- or keep the grant and set TENANT_RESTORE_FK_CHECKS=postgres on the workers.
  IF current_setting('server_version_num')::int >= 150000 THEN
    IF current_setting('tenant_restore.fk_checks') = 'postgres' THEN
      EXECUTE format('REVOKE SET ON PARAMETER session_replication_role FROM %I', role_name);
    ELSE
      EXECUTE format('GRANT SET ON PARAMETER session_replication_role TO %I', role_name);
    END IF;
  END IF;
END
$grants$;

-- The restore role above has NOCREATEDB, and needs no more: scratch databases are made by a separate scratch role,
-- on a scratch server that should not be live. Give it to every restore with
--   tenant-restore start --backup ... --scratch-server postgres://tenant_restore_scratch@<scratch host>/postgres
-- Without --scratch-server, scratch goes to live's server with live's role: `start` warns loudly, and with this role
-- the restore stops at once (ScratchServerNotAllowed: it may not create databases), before anything is written.
-- The scratch role lives on the scratch server, which holds only throw-away copies of backups. It needs CREATEDB to
-- create (and drop) the per-restore scratch database, and nothing on live. Create it there with, for example:
--   CREATE ROLE tenant_restore_scratch LOGIN CREATEDB PASSWORD '...';
-- pg_restore runs with --no-owner --no-privileges, so the restored objects belong to that role.
