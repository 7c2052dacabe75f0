"""PostgreSQL: ``agent_runtime_apply(jsonb)``, a lease holder's whole transaction in one statement.

The store sends one JSON document per lease-holder transaction (see ``TaskTx.apply_document``):
the fenced task-row update, the step and tool-call writes in order, the events and the NOTIFY.
It returns false, having written nothing, when the fence refuses (the lease epoch or owner, the
sequence number or ``updated_at`` the holder started from no longer match). A single statement
is atomic, so the store runs it outside an explicit transaction: one round trip instead of ~10.

Values keep the semantics of the SQLAlchemy statements they replace: a field absent from ``set``
or ``f`` is left alone; JSON ``null`` in a JSONB column is stored as JSON ``null`` (SQLAlchemy's
``none_as_null=False``) and as SQL NULL in any other column. Unknown op kinds raise.

No-op on SQLite (the store writes through SQLAlchemy statements there).

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"


def _value(col: str, kind: str, src: str) -> str:
    """The SQL value of key ``col`` of the jsonb ``src``, as the column's type."""
    return {
        "text": f"{src}->>'{col}'",
        "json": f"{src}->'{col}'",
        "int": f"({src}->>'{col}')::integer",
        "bool": f"({src}->>'{col}')::boolean",
        "ts": f"({src}->>'{col}')::timestamptz",
    }[kind]


def _set(col: str, kind: str, src: str) -> str:
    """``col = <the value from src if it has the key, else unchanged>``."""
    return f"{col} = CASE WHEN {src} ? '{col}' THEN {_value(col, kind, src)} ELSE {col} END"


TASK_COLUMNS = {
    "status": "text",
    "prompt": "text",
    "metadata": "json",
    "created_at": "ts",
    "current_plan_version": "int",
    "approved_plan_version": "int",
    "result": "json",
    "error": "json",
    "revision_feedback": "text",
    "lease_owner": "text",
    "lease_expires_at": "ts",
    "lease_epoch": "int",
    "finished_at": "ts",
}
STEP_COLUMNS = {
    "position": "int",
    "status": "text",
    "output": "text",
    "error": "json",
    "started_at": "ts",
    "finished_at": "ts",
}
CALL_COLUMNS = {
    "plan_version": "int",
    "step_id": "text",
    "turn": "int",
    "call_index": "int",
    "tool_name": "text",
    "arguments": "json",
    "status": "text",
    "result": "json",
    "is_error": "bool",
    "lease_epoch": "int",
    "started_at": "ts",
    "finished_at": "ts",
}
NEW_CALL_COLUMNS = {"id": "text", "task_id": "text", **CALL_COLUMNS}


def _sets(columns: dict[str, str], src: str, indent: int) -> str:
    return (",\n" + " " * indent).join(_set(col, kind, src) for col, kind in columns.items())


FUNCTION = f"""
CREATE OR REPLACE FUNCTION agent_runtime_apply(p jsonb) RETURNS boolean
LANGUAGE plpgsql AS $fn$
DECLARE
    v_task text := p->>'id';
    v_now timestamptz := (p->>'now')::timestamptz;
    s jsonb := p->'set';
    o jsonb;
    f jsonb;
BEGIN
    UPDATE tasks SET
        {_sets(TASK_COLUMNS, "s", 8)},
        updated_at = v_now,
        last_seq = (p->>'last_seq')::integer
    WHERE id = v_task
        AND last_seq = (p->>'seq')::integer
        AND lease_epoch = (p->>'epoch')::integer
        AND lease_owner = p->>'owner'
        AND updated_at = (p->>'updated_at')::timestamptz;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    FOR o IN SELECT value FROM jsonb_array_elements(p->'ops') LOOP
        f := o->'f';
        CASE o->>'k'
        WHEN 'step' THEN
            UPDATE steps SET
                {_sets(STEP_COLUMNS, "f", 16)}
            WHERE task_id = v_task AND plan_version = (o->>'v')::integer AND step_id = o->>'s';
        WHEN 'call' THEN
            UPDATE tool_calls SET
                {_sets(CALL_COLUMNS, "f", 16)}
            WHERE id = o->>'id' AND task_id = v_task;
        WHEN 'new_call' THEN
            INSERT INTO tool_calls ({", ".join(NEW_CALL_COLUMNS)})
            VALUES ({", ".join(_value(col, kind, "f") for col, kind in NEW_CALL_COLUMNS.items())});
        END CASE;
    END LOOP;
    INSERT INTO events (task_id, seq, type, data, created_at)
    SELECT v_task, (e->>'seq')::integer, e->>'type', e->'data', v_now
    FROM jsonb_array_elements(p->'events') AS e;
    IF p ? 'notify' THEN
        PERFORM pg_notify(p->>'channel', p->>'notify');
    END IF;
    RETURN true;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agent_runtime_apply(jsonb)")
