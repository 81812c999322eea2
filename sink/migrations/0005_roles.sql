-- fleetrun sink schema 5: least privilege. Three group roles (NOLOGIN; login users are made
-- members of them: the local stack and docker-compose create fleetrun, fleetrun_sink and
-- fleetrun_analyst, README "Giving another team read access"):
--
--   fleetrun_owner   owns every fleetrun table and view: migrations and partition DDL (create
--                    ahead, drop past retention) run as it (sink/migrate.py, sink/partitions.py
--                    SET LOCAL ROLE to the owner of schema_migrations / results)
--   fleetrun_writer  the sink: SELECT, INSERT, UPDATE, DELETE on the tables; no DDL (it can
--                    neither create nor drop nor alter a table; its staging tables are TEMP)
--   fleetrun_reader  analytics and other teams: SELECT on the tables and views, nothing else
--
-- Roles belong to the cluster, not the database, so they are created only when missing, which
-- needs CREATEROLE; without it, an administrator creates them first (the same three CREATE ROLE
-- lines, and GRANT fleetrun_owner TO <the user that runs migrations>). Default privileges make
-- the grants cover tables later migrations add (0006 …), as long as they are created by
-- fleetrun_owner, which sink/migrate.py sees to.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetrun_owner') THEN
        CREATE ROLE fleetrun_owner NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetrun_writer') THEN
        CREATE ROLE fleetrun_writer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleetrun_reader') THEN
        CREATE ROLE fleetrun_reader NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'fleetrun_owner', 'MEMBER') THEN
        EXECUTE format('GRANT fleetrun_owner TO %I', current_user);
    END IF;
END
$$;

-- The owner creates in the schema (PostgreSQL 15 allows only the database owner by default;
-- ALTER … OWNER TO needs it too); nobody else does, also on older servers where PUBLIC may.
GRANT USAGE, CREATE ON SCHEMA public TO fleetrun_owner;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO fleetrun_writer, fleetrun_reader;

-- Hand what migrations 1-4 created (as the migrating user) to the owner role: tables with their
-- partitions, indexes and identity sequences, and the views.
DO $$
DECLARE
    rel record;
BEGIN
    FOR rel IN
        SELECT c.oid::regclass AS name, c.relkind
        FROM pg_class AS c
        JOIN pg_namespace AS n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
          AND c.relkind IN ('r', 'p', 'v', 'm')
          AND c.relowner = (SELECT oid FROM pg_roles WHERE rolname = current_user)
    LOOP
        IF rel.relkind IN ('v', 'm') THEN
            EXECUTE format('ALTER %s %s OWNER TO fleetrun_owner',
                           CASE rel.relkind WHEN 'v' THEN 'VIEW' ELSE 'MATERIALIZED VIEW' END,
                           rel.name);
        ELSE
            EXECUTE format('ALTER TABLE %s OWNER TO fleetrun_owner', rel.name);
        END IF;
    END LOOP;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO fleetrun_writer;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO fleetrun_writer;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM fleetrun_writer;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO fleetrun_reader;

ALTER DEFAULT PRIVILEGES FOR ROLE fleetrun_owner IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO fleetrun_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE fleetrun_owner IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO fleetrun_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE fleetrun_owner IN SCHEMA public
    GRANT SELECT ON TABLES TO fleetrun_reader;
