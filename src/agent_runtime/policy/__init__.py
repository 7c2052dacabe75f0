"""Approval policy: which plans pass on their own, which wait for whom, which calls are gated or
refused; budgets, prices and cost estimates. Pure: no I/O apart from reading the policy file, so
the service layer decides *when* to ask and records *what* was decided.

* ``model.py``: the policy file's shape (rules, conditions, decisions);
* ``loader.py``: reading it (errors name file, rule and key) and reloading it;
* ``decisions.py``: the facts the engine is given and the decisions it returns;
* ``engine.py``: :func:`decide_plan` and :func:`decide_call`, fail closed;
* ``sticky.py``: :func:`is_scope_subset` for Atlantis-style re-approval scope;
* ``budget.py``: a task's spend against its budget (:func:`breaches`);
* ``pricing.py``: the price table and :func:`cost_of`;
* ``estimate.py``: :func:`estimate_plan`.
"""

from agent_runtime.policy.budget import Breach, Spent, breaches, effective_budget
from agent_runtime.policy.decisions import (
    POLICY_ACTOR_PREFIX,
    Allow,
    AutoApprove,
    CallDecision,
    CallFacts,
    DenyCall,
    DenyPlan,
    PlanDecision,
    PlanFacts,
    Refusal,
    RequireApproval,
    RequireCallApproval,
    decision_payload,
)
from agent_runtime.policy.engine import decide_call, decide_plan
from agent_runtime.policy.estimate import Estimate, StepEstimate, StepSample, estimate_plan
from agent_runtime.policy.loader import PolicyError, PolicyHolder, load_policy, policy_from_data
from agent_runtime.policy.model import DEFAULT_POLICY, Policy
from agent_runtime.policy.pricing import DEFAULT_PRICES, PriceTable, cost_of
from agent_runtime.policy.sticky import is_scope_subset
from agent_runtime.settings import Budget

__all__ = [
    "DEFAULT_POLICY",
    "DEFAULT_PRICES",
    "POLICY_ACTOR_PREFIX",
    "Allow",
    "Breach",
    "AutoApprove",
    "Budget",
    "CallDecision",
    "CallFacts",
    "DenyCall",
    "DenyPlan",
    "Estimate",
    "PlanDecision",
    "PlanFacts",
    "Policy",
    "PolicyError",
    "PolicyHolder",
    "PriceTable",
    "Refusal",
    "RequireApproval",
    "RequireCallApproval",
    "StepEstimate",
    "StepSample",
    "Spent",
    "breaches",
    "cost_of",
    "decide_call",
    "decide_plan",
    "decision_payload",
    "effective_budget",
    "estimate_plan",
    "is_scope_subset",
    "load_policy",
    "policy_from_data",
]
