// `spectask acp` driven by the official ACP TypeScript SDK (@agentclientprotocol/sdk, pinned in
// package-lock.json): its client app (`client()` … `connectWith`, the SDK's replacement for the
// removed `ClientSideConnection`) over `ndJsonStream` on the agent's stdio, so the wire format is
// checked by code spectask did not write. Run by crates/cli/tests/cli/acp_sdk.rs against
// `spectask serve` with a loopback planner and the scripted ACP test agent.
//
// Environment: SPECTASK_BIN (the spectask binary), SPECTASK_SERVER (the server's base URL),
// ACP_PROJECT (absolute project path, the threads' cwd), ACP_CWD (the agent process's cwd).
//
// Every message is checked twice: the SDK parses what it receives with its generated schemas
// (an update it cannot parse is dropped with a console error, which fails this script), and a tap
// between the SDK and the pipe checks the raw messages too, responses included (the SDK does not
// check responses), with the same generated schemas. On success it prints a one-line JSON
// summary and exits 0; on a failure it prints the reason on stderr and exits 1.

import { spawn } from "node:child_process";
import { Readable, Writable } from "node:stream";

import * as acp from "@agentclientprotocol/sdk";
// The SDK's generated zod validators: not among the package's exports, so imported by path (the
// version is pinned). The SDK applies them to what it receives, never to responses.
import * as schemas from "./node_modules/@agentclientprotocol/sdk/dist/v1/schema/zod.gen.js";

/** The `spectask acp` process once spawned, and its exit status once it exits. */
let agentProcess;
let agentExit;

/** How long one step (a prompt turn, a load) may take before the script gives up. */
const STEP_TIMEOUT_MS = 180_000;

class Failure extends Error {}

function fail(message) {
  throw new Failure(message);
}

function check(condition, message, detail) {
  if (!condition) {
    const shown = detail === undefined ? "" : `\n${typeof detail === "string" ? detail : JSON.stringify(detail, null, 2)}`;
    fail(`${message}${shown}`);
  }
}

function env(name) {
  const value = process.env[name];
  if (!value) {
    fail(`${name} is not set`);
  }
  return value;
}

// Anything the SDK complains about (an update it could not parse, an invalid message, a
// response to an unknown request) is a protocol error of the agent's.
const protocolErrors = [];
const consoleError = console.error.bind(console);
console.error = (...args) => {
  protocolErrors.push(`the SDK logged: ${args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")}`);
  consoleError(...args);
};

function assertNoProtocolErrors() {
  check(protocolErrors.length === 0, "protocol errors on the wire", protocolErrors.join("\n"));
}

/** Which schema a response to each agent method must satisfy. */
const responseSchemas = {
  [acp.methods.agent.initialize]: schemas.zInitializeResponse,
  [acp.methods.agent.session.new]: schemas.zNewSessionResponse,
  [acp.methods.agent.session.load]: schemas.zLoadSessionResponse,
  [acp.methods.agent.session.list]: schemas.zListSessionsResponse,
  [acp.methods.agent.session.prompt]: schemas.zPromptResponse,
};

/** Which schema a message the agent sends must satisfy, by method. */
const incomingSchemas = {
  [acp.methods.client.session.update]: schemas.zSessionNotification,
  [acp.methods.client.session.requestPermission]: schemas.zRequestPermissionRequest,
};

/**
 * The raw messages in both directions, in wire order: requests sent, and for each response the
 * session updates of its session that came before it.
 */
class Wire {
  constructor() {
    this.sent = new Map(); // request id → { method, params }
    this.rawUpdates = new Map(); // sessionId → raw update params, in arrival order
    this.before = new Map(); // "method sessionId" → updates of that session before the response
    this.sentErrors = 0;
  }

  outgoing(message) {
    if ("method" in message && "id" in message) {
      this.sent.set(message.id, { method: message.method, params: message.params });
    } else if ("error" in message) {
      // The SDK answered something the agent sent with an error: a parse error, an invalid
      // request, or a request our client could not handle.
      protocolErrors.push(`the client answered the agent with an error: ${JSON.stringify(message)}`);
    }
  }

  incoming(message) {
    if ("method" in message) {
      const schema = incomingSchemas[message.method];
      if (!schema) {
        protocolErrors.push(`the agent sent an unexpected method: ${JSON.stringify(message)}`);
        return;
      }
      const parsed = schema.safeParse(message.params);
      if (!parsed.success) {
        protocolErrors.push(`${message.method} does not match the ACP schema: ${parsed.error.message}\n${JSON.stringify(message)}`);
      }
      if (message.method === acp.methods.client.session.update) {
        const id = message.params?.sessionId;
        if (!this.rawUpdates.has(id)) {
          this.rawUpdates.set(id, []);
        }
        this.rawUpdates.get(id).push(message.params);
      }
      return;
    }
    const request = this.sent.get(message.id);
    if (!request) {
      protocolErrors.push(`a response to no request of ours: ${JSON.stringify(message)}`);
      return;
    }
    this.sent.delete(message.id);
    if ("error" in message) {
      return; // the caller's promise rejects with it
    }
    const schema = responseSchemas[request.method];
    if (schema) {
      const parsed = schema.safeParse(message.result);
      if (!parsed.success) {
        protocolErrors.push(`the ${request.method} response does not match the ACP schema: ${parsed.error.message}\n${JSON.stringify(message)}`);
      }
    }
    const session = request.params?.sessionId;
    if (session !== undefined) {
      this.before.set(`${request.method} ${session}`, (this.rawUpdates.get(session) ?? []).slice());
    }
  }

  /** The updates of `session` that arrived before the response to `method` on it. */
  updatesBefore(method, session) {
    return this.before.get(`${method} ${session}`) ?? [];
  }

  /** A stream between the SDK and `raw` that records every message passing. */
  tap(raw) {
    const out = new TransformStream({
      transform: (message, controller) => {
        this.outgoing(message);
        controller.enqueue(message);
      },
    });
    out.readable.pipeTo(raw.writable).catch(() => {});
    const incoming = new TransformStream({
      transform: (message, controller) => {
        this.incoming(message);
        controller.enqueue(message);
      },
    });
    return { writable: out.writable, readable: raw.readable.pipeThrough(incoming) };
  }
}

/**
 * `input` unchanged, checking that every line on it is one JSON object: the SDK answers any
 * other line with a parse error straight to the agent, which nothing would notice.
 */
function checkLines(input) {
  const decoder = new TextDecoder();
  let pending = "";
  const checkLine = (line) => {
    if (line.trim() === "") {
      return;
    }
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      protocolErrors.push(`spectask acp wrote a line that is not JSON on stdout: ${line.slice(0, 500)}`);
      return;
    }
    if (message === null || typeof message !== "object" || Array.isArray(message)) {
      protocolErrors.push(`spectask acp wrote a line that is not one JSON object: ${line.slice(0, 500)}`);
    }
  };
  return input.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        pending += decoder.decode(chunk, { stream: true });
        const lines = pending.split("\n");
        pending = lines.pop();
        lines.forEach(checkLine);
        controller.enqueue(chunk);
      },
      flush() {
        checkLine(pending + decoder.decode());
      },
    }),
  );
}

/** What our client received through the SDK, after its parsing. */
class Seen {
  constructor() {
    this.updates = new Map(); // sessionId → SessionUpdate[]
    this.permissions = []; // { sessionId, title, options, answer }
    this.waiters = new Set();
  }

  update(notification) {
    const id = notification.sessionId;
    if (!this.updates.has(id)) {
      this.updates.set(id, []);
    }
    this.updates.get(id).push(notification.update);
    this.wake();
  }

  permission(record) {
    this.permissions.push(record);
    this.wake();
  }

  wake() {
    for (const waiter of this.waiters) {
      waiter();
    }
  }

  of(session) {
    return this.updates.get(session) ?? [];
  }

  /** Resolves once `predicate()` holds (checked on every update), or fails after a timeout. */
  async until(what, predicate, detail) {
    if (predicate()) {
      return;
    }
    await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Failure(`timed out waiting for ${what}\n${JSON.stringify(detail?.() ?? null, null, 2)}`));
      }, STEP_TIMEOUT_MS);
      const waiter = () => {
        if (predicate()) {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve();
        }
      };
      this.waiters.add(waiter);
    });
  }
}

/** Text of the agent's (or user's) text chunks. */
function text(updates, kind = "agent_message_chunk") {
  return updates
    .filter((u) => u.sessionUpdate === kind && u.content?.type === "text")
    .map((u) => u.content.text)
    .join("");
}

function plans(updates) {
  return updates.filter((u) => u.sessionUpdate === "plan").map((u) => u.entries.map((e) => e.status));
}

function allCompleted(plan) {
  return plan !== undefined && plan.length > 0 && plan.every((status) => status === "completed");
}

const RANK = { pending: 0, in_progress: 1, completed: 2 };

/** Rejects after `ms` with `what`, so a hung request fails the script with a reason. */
function within(promise, what, ms = STEP_TIMEOUT_MS) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`timed out: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function main() {
  const bin = env("SPECTASK_BIN");
  const server = env("SPECTASK_SERVER");
  const project = env("ACP_PROJECT");
  const cwd = env("ACP_CWD");

  agentProcess = spawn(bin, ["acp", "--server", server], {
    cwd,
    stdio: ["pipe", "pipe", "inherit"],
  });
  const exit = new Promise((resolve, reject) => {
    agentProcess.once("error", (err) => reject(new Failure(`cannot start ${bin}: ${err.message}`)));
    agentProcess.once("exit", (code, signal) => resolve({ code, signal }));
  });
  exit.catch(() => {});
  agentExit = exit;

  const wire = new Wire();
  const seen = new Seen();
  const stream = wire.tap(
    acp.ndJsonStream(Writable.toWeb(agentProcess.stdin), checkLines(Readable.toWeb(agentProcess.stdout))),
  );

  const app = acp
    .client({ name: "spectask-acp-sdk-test" })
    .onNotification(acp.methods.client.session.update, ({ params }) => {
      seen.update(params);
    })
    .onRequest(acp.methods.client.session.requestPermission, ({ params }) => {
      const title = params.toolCall?.title ?? "";
      const answer = title.startsWith("Approve the spec") ? "approve" : "allow";
      seen.permission({
        sessionId: params.sessionId,
        title,
        options: params.options.map((o) => o.optionId),
        answer,
      });
      return { outcome: { outcome: "selected", optionId: answer } };
    })
    .onRequest(acp.methods.client.fs.readTextFile, ({ params }) => {
      protocolErrors.push(`spectask acp read a file through the client: ${JSON.stringify(params)}`);
      throw acp.RequestError.methodNotFound(acp.methods.client.fs.readTextFile);
    })
    .onRequest(acp.methods.client.fs.writeTextFile, ({ params }) => {
      protocolErrors.push(`spectask acp wrote a file through the client: ${JSON.stringify(params)}`);
      throw acp.RequestError.methodNotFound(acp.methods.client.fs.writeTextFile);
    });

  const summary = await app.connectWith(stream, async (agent) => {
    const call = async (what, promise) => {
      try {
        return await within(promise, what);
      } catch (err) {
        if (err instanceof Failure) {
          throw err;
        }
        fail(`${what} failed: ${err?.message ?? err} ${JSON.stringify(err?.data ?? null)}`);
      }
    };
    // Waits until our client has been handed (after the SDK's parsing) every update of
    // `session` that preceded the response to `method` on the wire, and returns those.
    const delivered = async (method, session) => {
      // The tap has seen every message before the response: an invalid one fails at once.
      assertNoProtocolErrors();
      const before = wire.updatesBefore(method, session);
      await seen.until(
        `the SDK to deliver the ${before.length} updates of ${session} sent before the ${method} response`,
        () => seen.of(session).length >= before.length,
        () => ({ raw: before.length, delivered: seen.of(session).length, protocolErrors }),
      );
      assertNoProtocolErrors();
      return seen.of(session).slice(0, before.length);
    };

    // initialize
    const init = await call(
      "initialize",
      agent.request(acp.methods.agent.initialize, { protocolVersion: 1, clientCapabilities: {} }),
    );
    check(init.protocolVersion === 1, "initialize: protocolVersion is not 1", init);
    check(init.agentCapabilities?.loadSession === true, "initialize: agentCapabilities.loadSession is not true", init);
    check(
      init.agentCapabilities?.sessionCapabilities?.list != null,
      "initialize: agentCapabilities.sessionCapabilities.list is missing",
      init,
    );

    // session/new
    const created = await call(
      "session/new",
      agent.request(acp.methods.agent.session.new, { cwd: project, mcpServers: [] }),
    );
    const thread = created.sessionId;
    check(typeof thread === "string" && thread.length > 0, "session/new: no sessionId", created);

    // The first prompt: plan, approve, implement, review.
    const first = await call(
      "the first prompt turn",
      agent.request(acp.methods.agent.session.prompt, {
        sessionId: thread,
        prompt: [{ type: "text", text: "Write a greeting" }],
      }),
    );
    check(first.stopReason === "end_turn", "first prompt: stopReason is not end_turn", first);
    const updates = await delivered(acp.methods.agent.session.prompt, thread);
    const agentText = text(updates);
    check(agentText.includes("# Requirements: Greeting"), "first prompt: the planning did not stream", agentText);
    check(agentText.includes("Ready for review"), "first prompt: no \"Ready for review\"", agentText);
    const createdLine = /Created SpecTask `(spt_[^`]+)`/.exec(agentText);
    check(createdLine, "first prompt: no \"Created SpecTask `spt_…`\" line", agentText);
    const taskId = createdLine[1];

    const links = updates
      .filter((u) => u.sessionUpdate === "agent_message_chunk" && u.content?.type === "resource_link")
      .map((u) => u.content.uri);
    check(links.length === 3, "first prompt: expected three resource_link chunks", links);
    ["/requirements.md", "/design.md", "/tasks.md"].forEach((suffix, i) => {
      check(links[i].endsWith(suffix), `first prompt: resource link ${i + 1} does not end with ${suffix}`, links);
    });

    const approval = seen.permissions.find((p) => p.title.startsWith("Approve the spec"));
    check(approval, "first prompt: no \"Approve the spec\" permission request", seen.permissions);
    check(approval.title === "Approve the spec (revision 1)", "first prompt: the approval is not for revision 1", approval);
    check(approval.sessionId === thread, "first prompt: the approval was asked on another thread", approval);
    check(approval.options.includes("approve"), "first prompt: the approval offers no \"approve\" option", approval);
    const forwarded = seen.permissions.find((p) => p.title === "Write part-one.txt");
    check(forwarded, "first prompt: the agent's \"Write part-one.txt\" question was not forwarded", seen.permissions);
    check(
      JSON.stringify(forwarded.options) === JSON.stringify(["reject", "allow"]),
      "first prompt: the forwarded question's options are not reject, allow",
      forwarded,
    );

    const planStatuses = plans(updates);
    check(planStatuses.length > 0, "first prompt: no plan updates", updates);
    check(allCompleted(planStatuses.at(-1)), "first prompt: the last plan is not all completed", planStatuses);
    for (let i = 1; i < planStatuses.length; i++) {
      planStatuses[i - 1].forEach((before, j) => {
        const after = planStatuses[i][j];
        check(
          after === undefined || RANK[before] <= RANK[after],
          `first prompt: plan entry ${j + 1} went back from ${before} to ${after}`,
          planStatuses,
        );
      });
    }
    const toolCalls = updates.filter((u) => u.sessionUpdate === "tool_call").map((u) => u.toolCallId);
    check(
      toolCalls.some((id) => id.startsWith("work-session:")),
      "first prompt: no work-session tool call",
      toolCalls,
    );

    // session/list
    const listed = [];
    let cursor;
    do {
      const page = await call(
        "session/list",
        agent.request(acp.methods.agent.session.list, { cwd: project, ...(cursor ? { cursor } : {}) }),
      );
      listed.push(...page.sessions);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    const listedIds = listed.map((s) => s.sessionId);
    check(listedIds.includes(taskId), `session/list: the task ${taskId} is missing`, listed);
    const workSessions = listedIds.filter((id) => id.startsWith("stws_"));
    check(workSessions.length >= 2, "session/list: fewer than two work sessions", listed);
    for (const ws of workSessions) {
      check(
        toolCalls.includes(`work-session:${ws}`),
        `first prompt: no tool call for the work session ${ws}`,
        toolCalls,
      );
    }
    for (const session of listed) {
      check(session.cwd === project, "session/list: a session of another cwd", session);
    }

    // session/load replays the task's thread before it answers.
    await call(
      "session/load",
      agent.request(acp.methods.agent.session.load, { sessionId: taskId, cwd: project, mcpServers: [] }),
    );
    const replay = await delivered(acp.methods.agent.session.load, taskId);
    check(
      text(replay, "user_message_chunk").includes("Write a greeting"),
      "session/load: no replayed user message \"Write a greeting\" before the response",
      replay,
    );
    check(
      text(replay).includes("# Requirements: Greeting"),
      "session/load: no replayed planning before the response",
      text(replay),
    );
    const replayedPlans = plans(replay);
    check(
      allCompleted(replayedPlans.at(-1)),
      "session/load: the last replayed plan is not all completed",
      replayedPlans,
    );

    // `approve` on the task's thread finishes the task.
    const before = seen.of(taskId).length;
    const done = await call(
      "the approve prompt turn",
      agent.request(acp.methods.agent.session.prompt, {
        sessionId: taskId,
        prompt: [{ type: "text", text: "approve" }],
      }),
    );
    check(done.stopReason === "end_turn", "approve: stopReason is not end_turn", done);
    const afterApprove = (await delivered(acp.methods.agent.session.prompt, taskId)).slice(before);
    check(text(afterApprove).includes("The task is done."), "approve: no \"The task is done.\"", text(afterApprove));

    assertNoProtocolErrors();
    return {
      taskId,
      thread,
      workSessions,
      listed: listedIds.length,
      permissions: seen.permissions.map((p) => ({ title: p.title, answer: p.answer })),
      updates: Object.fromEntries([...seen.updates].map(([id, list]) => [id, list.length])),
    };
  });

  // The editor goes away: spectask acp ends cleanly.
  agentProcess.stdin.end();
  const status = await within(exit, "spectask acp to exit after its stdin closed", 60_000);
  check(status.code === 0, "spectask acp did not exit with 0 after its stdin closed", status);
  assertNoProtocolErrors();
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

try {
  await main();
} catch (err) {
  // A connection that closed under a step is most likely the agent exiting: say how.
  const exited = agentExit
    ? await within(agentExit, "", 2_000).catch(() => null)
    : null;
  const status = exited ? ` (spectask acp exited: ${JSON.stringify(exited)})` : "";
  process.stderr.write(`acp-sdk flow failed${status}: ${err instanceof Failure ? err.message : err?.stack ?? err}\n`);
  process.exitCode = 1;
}
// A failed flow may leave the agent running: stop it, and let nothing keep the script alive.
if (agentProcess && agentProcess.exitCode === null && agentProcess.signalCode === null) {
  agentProcess.kill();
}
process.exit(process.exitCode ?? 0);
