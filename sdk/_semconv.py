"""Attribute keys agentwatch emits and reads.

The OpenTelemetry GenAI conventions are still in development, so we keep our own copy of the
names instead of importing the incubating module. What GenAI does not cover lives under
``agentwatch.*``; those keys are a public contract other instrumentations may set too.
"""

from __future__ import annotations

from typing import Final

# --- OpenTelemetry GenAI semantic conventions -------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # deprecated predecessor of gen_ai.provider.name
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_AGENT_ID: Final = "gen_ai.agent.id"
GEN_AI_AGENT_DESCRIPTION: Final = "gen_ai.agent.description"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_USAGE_CACHE_READ_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
GEN_AI_USAGE_CACHE_WRITE_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
GEN_AI_USAGE_REASONING_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
GEN_AI_TOOL_NAME: Final = "gen_ai.tool.name"
GEN_AI_TOOL_TYPE: Final = "gen_ai.tool.type"
GEN_AI_TOOL_DESCRIPTION: Final = "gen_ai.tool.description"
GEN_AI_TOOL_CALL_ID: Final = "gen_ai.tool.call.id"
GEN_AI_TOOL_CALL_ARGUMENTS: Final = "gen_ai.tool.call.arguments"
GEN_AI_TOOL_CALL_RESULT: Final = "gen_ai.tool.call.result"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
ERROR_TYPE: Final = "error.type"

OPERATION_INVOKE_AGENT: Final = "invoke_agent"
OPERATION_CHAT: Final = "chat"
OPERATION_EXECUTE_TOOL: Final = "execute_tool"

# --- agentwatch.* ------------------------------------------------------------------------------
TASK_TYPE: Final = "agentwatch.task.type"
TASK_OUTCOME: Final = "agentwatch.task.outcome"
TASK_OUTCOME_REASON: Final = "agentwatch.task.outcome_reason"
TASK_ITERATIONS: Final = "agentwatch.task.iterations"
DECISION_NAME: Final = "agentwatch.decision.name"
DECISION_CONFIDENCE: Final = "agentwatch.decision.confidence"
DECISION_ROUTE: Final = "agentwatch.decision.route"
DECISION_REASONING: Final = "agentwatch.decision.reasoning"
TOOL_TIER: Final = "agentwatch.tool.tier"
AGENT_TOOLS: Final = "agentwatch.agent.tools"
LIMIT_EXCEEDED: Final = "agentwatch.limit.exceeded"
LIMIT_VALUE: Final = "agentwatch.limit.value"
LIMIT_MAXIMUM: Final = "agentwatch.limit.maximum"
HEALTH_CHECK: Final = "agentwatch.health.check"
HEALTH_PASSED: Final = "agentwatch.health.passed"
HEALTH_FAILED_EXPECTATION: Final = "agentwatch.health.failed_expectation"
HEALTH_REASON: Final = "agentwatch.health.reason"
HEALTH_LATENCY_MS: Final = "agentwatch.health.latency_ms"
HEALTH_ANSWER: Final = "agentwatch.health.answer"
FEEDBACK_SCORE: Final = "agentwatch.feedback.score"
FEEDBACK_CORRECT: Final = "agentwatch.feedback.correct"
FEEDBACK_THUMBS_UP: Final = "agentwatch.feedback.thumbs_up"
FEEDBACK_COMMENT: Final = "agentwatch.feedback.comment"
FEEDBACK_TARGET_SPAN_ID: Final = "agentwatch.feedback.span_id"
# A call answered by ``aw.replay`` from a recorded trace, not by the function itself.
REPLAY: Final = "agentwatch.replay"
ENVIRONMENT: Final = "deployment.environment.name"

# Span names for the agentwatch-only operations.
OPERATION_DECISION: Final = "decision"
OPERATION_FEEDBACK: Final = "feedback"

OUTCOMES: Final = ("completed", "escalated", "failed", "limit_exceeded")
ROUTES: Final = ("auto", "review", "escalate")
TOOL_TIERS: Final = ("read", "write_safe", "write_risky", "destructive")
LIMITS: Final = ("iterations", "tokens", "cost", "tool_calls", "wall_time")
