-- sepgadm 001: the credential table and the tagging functions.
--
-- sepgadm.tag_switch is the trusted procedure (labelled sepgadm_switch_exec_t by
-- `sepgadm install`): executing it moves the caller into sepgadm_switch_t, the only
-- domain the policy lets read the credential digest and dyntransition to a tenant.
-- sepgadm.tag is a thin, untrusted wrapper that calls it and then returns
-- sepgsql_getcon(): once the trusted procedure has returned, that is the label the
-- caller really runs under (inside the procedure getcon still shows the trusted domain).
--
-- Parameters are referenced positionally through aliases so that no plpgsql variable
-- shares a name with a column ("ambiguous" errors).

-- Every database role may reach the functions (the proxy logs in as its clients' roles);
-- what guards the switch is SELinux and the credential, not DAC.
GRANT USAGE ON SCHEMA sepgadm TO PUBLIC;

CREATE TABLE sepgadm.credential (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    digest     text        NOT NULL CHECK (digest ~ '^[0-9a-f]{64}$'),
    rotated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sepgadm.credential IS
    'SHA-256 (hex) of the tagging credential; the token itself is never stored';
REVOKE ALL ON sepgadm.credential FROM PUBLIC;

CREATE FUNCTION sepgadm.tag_switch(credential text, context text) RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p_token   ALIAS FOR $1;
    p_context ALIAS FOR $2;
    v_stored  text;
BEGIN
    SELECT c.digest INTO v_stored FROM sepgadm.credential AS c WHERE c.singleton;
    IF v_stored IS NULL OR p_token IS NULL
       OR encode(sha256(convert_to(p_token, 'UTF8')), 'hex') <> v_stored THEN
        RAISE EXCEPTION 'sepgadm: invalid credential' USING ERRCODE = '28000';
    END IF;
    IF to_regprocedure('pg_catalog.sepgsql_getcon()') IS NULL THEN
        RAISE EXCEPTION 'sepgadm: sepgsql is not enabled on this server'
            USING ERRCODE = '55000', HINT = 'sepgsql.sql is not installed in this database';
    END IF;
    IF pg_catalog.sepgsql_getcon() IS NULL THEN
        RAISE EXCEPTION 'sepgadm: sepgsql is not enabled on this server' USING ERRCODE = '55000';
    END IF;
    -- NULL returns the session to its peer label (the proxy's own domain). An invalid
    -- label (42602) or a denied transition (42501) propagates with sepgsql's SQLSTATE.
    RETURN pg_catalog.sepgsql_setcon(p_context);
END
$fn$;

CREATE FUNCTION sepgadm.tag(credential text, context text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM sepgadm.tag_switch($1, $2);
    RETURN pg_catalog.sepgsql_getcon();
END
$fn$;

COMMENT ON FUNCTION sepgadm.tag(text, text) IS
    'Switch this session''s SELinux label to context (NULL: back to the peer label) and return it; needs the proxy''s credential';
