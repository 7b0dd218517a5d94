-- FerretDB 1.24 (pg handler) filters `_id` as `_jsonb->'_id' @> $1`, which its own btree index on
-- (_jsonb->'_id') cannot serve: every update, replace, delete or find by `_id` would scan the whole table.
-- A GIN index on the same expression serves `@>`. FerretDB neither creates nor lists it, so this event
-- trigger adds one to every collection table as FerretDB creates it, and the DO block below to those that
-- exist already. Idempotent: `deploy/local/stack up` applies it on every start.
-- `fastupdate = off`: with GIN's pending list, keys inserted since the last vacuum are found by scanning that
-- list on every lookup (5 ms a lookup after 180,000 inserts, 0.04 ms once merged), which is the slowdown
-- the index is here to remove.

-- FerretDB sends the path as a parameter too (`_jsonb->$1 @> $2`): a generic plan cannot match that to the
-- index expression and scans the table. PostgreSQL switches a prepared statement to its generic plan after
-- five runs when it looks no dearer (it did from about 100,000 documents on), so plan every run for its values.
DO $$
BEGIN
    EXECUTE format('ALTER DATABASE %I SET plan_cache_mode = force_custom_plan', current_database());
END
$$;

CREATE OR REPLACE FUNCTION tuneflow_id_gin_name(tbl regclass) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT left(c.relname, 50) || '_tf_id_gin' FROM pg_class c WHERE c.oid = tbl
$$;

CREATE OR REPLACE FUNCTION tuneflow_index_collection(tbl regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = tbl AND a.attname = '_jsonb' AND NOT a.attisdropped)
       AND (SELECT c.relname NOT LIKE '\_ferretdb%' FROM pg_class c WHERE c.oid = tbl) THEN
        EXECUTE format('CREATE INDEX IF NOT EXISTS %I ON %s USING gin ((_jsonb -> %L)) WITH (fastupdate = off)',
                       tuneflow_id_gin_name(tbl), tbl, '_id');
        EXECUTE format('ALTER INDEX %I.%I SET (fastupdate = off)',
                       (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                        WHERE c.oid = tbl), tuneflow_id_gin_name(tbl));
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION tuneflow_index_new_collections() RETURNS event_trigger
LANGUAGE plpgsql AS $$
DECLARE
    created record;
BEGIN
    FOR created IN SELECT objid FROM pg_event_trigger_ddl_commands()
                   WHERE command_tag = 'CREATE TABLE' AND object_type = 'table' LOOP
        PERFORM tuneflow_index_collection(created.objid::regclass);
    END LOOP;
END
$$;

DROP EVENT TRIGGER IF EXISTS tuneflow_collection_id_gin;
CREATE EVENT TRIGGER tuneflow_collection_id_gin ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
    EXECUTE FUNCTION tuneflow_index_new_collections();

DO $$
DECLARE
    existing record;
BEGIN
    FOR existing IN SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                      AND n.nspname NOT LIKE 'pg\_%' LOOP
        PERFORM tuneflow_index_collection(existing.oid::regclass);
    END LOOP;
END
$$;
