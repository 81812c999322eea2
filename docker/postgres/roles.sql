-- Run once by the postgres image on a new data volume (/docker-entrypoint-initdb.d), as the
-- superuser POSTGRES_USER (fleetrun, which also runs the migrations). The same group roles
-- and logins as the local stack (stack/postgres.py, stack/config.py PG_*_USER): the sink
-- writes as fleetrun_sink (fleetrun_writer: no DDL), analytics reads as fleetrun_analyst
-- (fleetrun_reader). sink/migrations/0005_roles.sql grants them; passwords are for a laptop.
CREATE ROLE fleetrun_owner NOLOGIN;
CREATE ROLE fleetrun_writer NOLOGIN;
CREATE ROLE fleetrun_reader NOLOGIN;
GRANT fleetrun_owner TO fleetrun;
CREATE ROLE fleetrun_sink LOGIN PASSWORD 'fleetrun_sink' IN ROLE fleetrun_writer;
CREATE ROLE fleetrun_analyst LOGIN PASSWORD 'fleetrun_analyst' IN ROLE fleetrun_reader;
