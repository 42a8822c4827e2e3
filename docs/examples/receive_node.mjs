// Receive upload-gateway's messages with Node's http module, verified by the standardwebhooks
// package.
//
//   npm install standardwebhooks
//   UPLOAD_WEBHOOK_SECRET=whsec_... node receive_node.mjs
//
// UPLOAD_WEBHOOK_SECRET is the gateway's webhook.secret in its whsec_ form (docs/webhooks.md says
// how to write a plain secret that way). HOST (default 127.0.0.1) and PORT (default 3000; 0 takes
// a free one) say where to listen. Messages arrive at each route's forward path, here
// /internal/uploads/<route>, which only the gateway should be able to reach.

import http from "node:http";
import { Webhook, WebhookVerificationError } from "standardwebhooks";

const MAX_MESSAGE = 64 * 1024; // a message is a few hundred bytes of JSON

const secret = process.env.UPLOAD_WEBHOOK_SECRET ?? "";
if (!secret.startsWith("whsec_")) {
  // The library would read a plain secret as base64 and check with the wrong key.
  console.error("UPLOAD_WEBHOOK_SECRET must be webhook.secret in its whsec_ form");
  process.exit(1);
}
const verifier = new Webhook(secret);
// What a real app keeps in its database: the files, and the answer given to each message id.
const files = new Map();
const answers = new Map();

function reply(res, status, answer) {
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(answer));
}

// The body's bytes, or null once it passes MAX_MESSAGE.
async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_MESSAGE) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function uploadMessage(req, res) {
  const body = await readBody(req);
  if (body === null) return reply(res, 413, { error: "message too large" });
  let message;
  try {
    // The raw bytes, before any parsing: JSON parsed and written again would not match.
    message = verifier.verify(body, req.headers);
  } catch (err) {
    if (err instanceof WebhookVerificationError) return reply(res, 401, { error: err.message });
    throw err;
  }
  // Every delivery of one message has the same webhook-id (its Idempotency-Key too): a repeat
  // gets the first answer again and changes nothing.
  const messageId = req.headers["webhook-id"];
  if (answers.has(messageId)) return reply(res, 200, answers.get(messageId));
  const stored = message.object;
  let answer;
  if (message.event === "upload.completed") {
    files.set(stored.key, { user: message.user, filename: message.filename, size: stored.size });
    answer = { recorded: stored.key };
  } else if (message.event === "upload.deleted") {
    if (!files.delete(stored.key)) return reply(res, 404, { error: "no such file" });
    answer = { deleted: stored.key };
  } else {
    return reply(res, 400, { error: "unknown event" });
  }
  answers.set(messageId, answer);
  return reply(res, 200, answer);
}

const server = http.createServer((req, res) => {
  if (req.method !== "POST" || !req.url.startsWith("/internal/uploads/")) {
    return reply(res, 404, { error: "not found" });
  }
  uploadMessage(req, res).catch((err) => {
    console.error(err);
    if (!res.headersSent) reply(res, 500, { error: "internal error" });
  });
});

server.listen(Number(process.env.PORT ?? 3000), process.env.HOST ?? "127.0.0.1", () => {
  const { address, port } = server.address();
  console.log(`listening on http://${address}:${port}`);
});
