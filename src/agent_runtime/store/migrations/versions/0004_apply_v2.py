"""PostgreSQL: ``agent_runtime_apply_v2(jsonb)``, the one write path of every task transaction.

Replaces ``agent_runtime_apply`` (0002/0003), which carried only a lease holder's journal writes
and fenced on the sequence number. v2 carries every operation a transaction can buffer (see
``store/pg_document.py``): a new task's insert, plan versions, step and tool-call writes (also
"where status in ..." updates), approvals, events and the NOTIFY. It

* fences on the lease only (epoch and owner, when the document names them: a lease holder's write;
  a writer without a lease holds the row lock, ``SELECT ... FOR UPDATE``, in the same transaction);
* allocates the events' sequence numbers itself (``last_seq = last_seq + n``), so a holder's write
  never collides with events another writer stored meanwhile;
* returns the task row as written (the holder's new view), or no row when the fence refused,
  having written nothing.

Rolling upgrade: code older than this migration calls ``agent_runtime_apply``, which is dropped
here, and falls back to its statement path (it logs ``store_apply_function_missing``); this
code needs 0004. Migrate first, then roll the replicas.

No-op on SQLite (the store writes kept statements there).

Revision ID: 0004
Revises: 0003
"""

import importlib
from typing import Any

from alembic import op

revision = "0004"
down_revision = "0003"

_v2: Any = importlib.import_module("agent_runtime.store.migrations.versions.0002_apply_function")
_value, _sets = _v2._value, _v2._sets
TASK_COLUMNS: dict[str, str] = _v2.TASK_COLUMNS
STEP_COLUMNS: dict[str, str] = _v2.STEP_COLUMNS
CALL_COLUMNS: dict[str, str] = _v2.CALL_COLUMNS
NEW_CALL_COLUMNS: dict[str, str] = _v2.NEW_CALL_COLUMNS
_IN = "status IN (SELECT jsonb_array_elements_text(o->'in'))"

FUNCTION = f"""
CREATE OR REPLACE FUNCTION agent_runtime_apply_v2(p jsonb) RETURNS SETOF tasks
LANGUAGE plpgsql AS $fn$
DECLARE
    v_task text := p->>'id';
    v_now timestamptz := (p->>'now')::timestamptz;
    v_n integer := jsonb_array_length(p->'events');
    s jsonb := p->'set';
    n jsonb := p->'new';
    r tasks%ROWTYPE;
    o jsonb;
    f jsonb;
BEGIN
    IF n IS NOT NULL THEN
        INSERT INTO tasks (id, status, prompt, metadata, created_at, updated_at, lease_epoch, last_seq)
        VALUES (v_task, n->>'status', n->>'prompt', n->'metadata', (n->>'created_at')::timestamptz,
                (n->>'created_at')::timestamptz, 0, 0);
    END IF;
    UPDATE tasks SET
        {_sets(TASK_COLUMNS, "s", 8)},
        updated_at = v_now,
        last_seq = last_seq + v_n
    WHERE id = v_task
        AND (p->'epoch' = 'null'::jsonb
             OR (lease_epoch = (p->>'epoch')::integer AND lease_owner = p->>'owner'))
    RETURNING * INTO r;
    IF NOT FOUND THEN
        RETURN;
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
        WHEN 'plan' THEN
            INSERT INTO plan_versions (task_id, version, content_hash, plan, author, created_at)
            VALUES (v_task, (o->>'v')::integer, o->>'hash', o->'plan', o->>'author', v_now);
            INSERT INTO steps (task_id, plan_version, step_id, position, status)
            SELECT v_task, (o->>'v')::integer, x.step_id, (x.i - 1)::integer, 'pending'
            FROM jsonb_array_elements_text(o->'steps') WITH ORDINALITY AS x(step_id, i);
        WHEN 'steps_where' THEN
            UPDATE steps SET
                {_sets(STEP_COLUMNS, "f", 16)}
            WHERE task_id = v_task AND plan_version = (o->>'v')::integer AND {_IN};
        WHEN 'calls_where' THEN
            UPDATE tool_calls SET
                {_sets(CALL_COLUMNS, "f", 16)}
            WHERE task_id = v_task AND {_IN};
        WHEN 'approval' THEN
            INSERT INTO approvals (task_id, plan_version, decision, actor, reason, created_at)
            VALUES (v_task, (o->>'v')::integer, o->>'decision', o->>'actor', o->>'reason', v_now);
        END CASE;
    END LOOP;
    INSERT INTO events (task_id, seq, type, data, created_at)
    SELECT v_task, r.last_seq - v_n + x.i::integer, x.e->>'type', x.e->'data', v_now
    FROM jsonb_array_elements(p->'events') WITH ORDINALITY AS x(e, i);
    IF p ? 'notify' THEN
        PERFORM pg_notify(p->'notify'->>'channel', jsonb_build_object(
            'task', v_task, 'last', r.last_seq, 'n', v_n,
            'work', (p->'notify'->>'work')::boolean, 'o', p->'notify'->>'o')::text);
    END IF;
    RETURN NEXT r;
END
$fn$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)
        op.execute("DROP FUNCTION IF EXISTS agent_runtime_apply(jsonb)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS agent_runtime_apply_v2(jsonb)")
        module: Any = importlib.import_module("agent_runtime.store.migrations.versions.0003_fence_on_lease_only")
        op.execute(module._function_0002().replace(module._FENCE, ""))
