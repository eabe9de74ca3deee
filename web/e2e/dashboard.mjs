// End-to-end: the dashboard in headless Chromium against a running TaskPilot.
//
// Onboards a tenant, adds an FAQ, chats in the sandbox and watches the reply appear live in the
// Command Center with its tier, cost and source, then takes over, replies as a human and hands
// back. Screenshots go to $OUTPUT_DIR.
//
//   TASKPILOT_URL=http://127.0.0.1:8005 TASKPILOT_TOKEN=$(taskpilot token --role operator) \
//   OUTPUT_DIR=../test-output/browser node e2e/dashboard.mjs
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = required("TASKPILOT_URL").replace(/\/$/, "");
const token = required("TASKPILOT_TOKEN");
const out = process.env.OUTPUT_DIR ?? "test-output/browser";
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const tenant = process.env.TENANT ?? `e2e-${Date.now().toString(36)}`;
const number = `1555${Math.floor(1e9 + Math.random() * 8e9)}`;
const QUESTION = "Do you have parking for customers?";
const ANSWER = "Yes: free parking behind the building, 20 spaces.";
const HUMAN = "Hi, Marta here from the team: we can also reserve a space for you.";
const WAIT = { timeout: 30_000 };

function required(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is required`);
  return value;
}

function step(name) {
  console.log(`· ${name}`);
}

mkdirSync(out, { recursive: true });
const started = Date.now();
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
  ],
});
const context = await browser.newContext({ viewport: { width: 1440, height: 900 } });
const shot = (page, name) => page.screenshot({ path: join(out, `${name}.png`), fullPage: true });

async function signIn(page) {
  await page.goto(`${base}/#token=${token}`);
  await page.getByText("Command Center").first().waitFor(WAIT);
}

async function useTenant(page) {
  const picker = page.getByLabel("Tenant");
  await picker.locator(`option[value="${tenant}"]`).waitFor({ state: "attached", ...WAIT });
  await picker.selectOption(tenant);
}

try {
  // -- 1. onboarding ------------------------------------------------------------------------
  step(`onboarding tenant ${tenant}`);
  const center = await context.newPage();
  center.on("pageerror", (e) => console.error("page error:", e.message));
  await signIn(center);
  await center.getByRole("link", { name: "Onboarding & settings" }).click();
  const another = center.getByText("+ Onboard another business");
  if (await another.isVisible()) await another.click();
  await center.getByLabel("Business name").fill("Bella Vista Studio");
  await center.getByLabel("Tenant id").fill(tenant);
  await center.getByRole("button", { name: "Create" }).click();
  await center.getByText(`Settings of ${tenant}`).waitFor(WAIT);
  await center.getByLabel("Phone number ID").fill(number);
  await center.getByLabel("Access token").fill("EAAG-e2e-access-token");
  await center.getByLabel("App secret").fill("e2e-app-secret");
  await center.getByLabel("Verify token (you choose it)").fill("e2e-verify-token");
  await center.getByRole("button", { name: "Connect the number" }).click();
  const webhook = await center.getByTestId("webhook-url").textContent(WAIT);
  if (!webhook.endsWith(`/webhooks/whatsapp/${tenant}`)) throw new Error(`webhook URL ${webhook}`);
  await center.getByLabel("Name shown to leads").fill("Bella Vista");
  await center.getByLabel("Time zone").fill("Europe/Rome");
  await center.getByRole("button", { name: "Save profile" }).click();
  await center.getByText("Saved.").waitFor(WAIT);
  await center.getByLabel("Monthly budget").fill("20");
  await center.getByRole("button", { name: "Save budget" }).click();
  await center.getByText("Budget: saved.").waitFor(WAIT);
  await shot(center, "1-onboarding");

  // -- 2. an FAQ ----------------------------------------------------------------------------
  step("adding an FAQ");
  await center.getByRole("link", { name: "Knowledge" }).click();
  await center.getByLabel("Question").fill(QUESTION);
  await center.getByLabel("Answer").fill(ANSWER);
  await center.getByRole("button", { name: "Add FAQ" }).click();
  await center.getByTestId("faq").filter({ hasText: QUESTION }).waitFor(WAIT);
  await shot(center, "2-knowledge");

  // -- 3. the sandbox chat, watched live from the Command Center -----------------------------
  step("chatting in the sandbox, watching the Command Center");
  await center.getByRole("link", { name: "Command Center" }).click();
  await center.getByText("● live").waitFor(WAIT);
  const phone = await context.newPage(); // another tab: its own session, signs in again
  await signIn(phone);
  await useTenant(phone);
  await phone.getByRole("link", { name: "Sandbox chat" }).click();
  const lead = (await phone.getByTestId("sandbox-lead").textContent(WAIT)).replace("+", "");
  await phone.getByLabel("Message as the lead").fill(QUESTION);
  await phone.getByRole("button", { name: "Send" }).click();
  await phone.getByTestId("sandbox-business").filter({ hasText: ANSWER }).waitFor(WAIT);
  await shot(phone, "3-sandbox-reply");

  const row = center.locator(`[data-testid="conversation-row"][data-lead="${lead}"]`);
  await row.waitFor(WAIT); // arrived over the live stream: the page was not reloaded
  await row.click();
  const reply = center.getByTestId("message").filter({ hasText: ANSWER });
  await reply.getByTestId("tier").filter({ hasText: "L1" }).waitFor(WAIT);
  await reply.getByTestId("source").filter({ hasText: "faq" }).waitFor(WAIT);
  const cost = await reply.getByTestId("cost").textContent();
  if (!/^\$\d+\.\d{5}$/.test(cost)) throw new Error(`cost shown as ${cost}`);
  await reply.getByTestId("sources").filter({ hasText: QUESTION }).waitFor(WAIT);
  await shot(center, "4-command-center-live-reply");

  // -- 4. take over, reply as a human, hand back ----------------------------------------------
  step("taking over and replying as a human");
  await center.getByRole("button", { name: "Take over" }).click();
  await center.getByTestId("conversation-status").filter({ hasText: "human" }).waitFor(WAIT);
  await center.getByLabel("Reply as a human").fill(HUMAN);
  await center.getByRole("button", { name: "Send" }).click();
  await center.getByTestId("message").filter({ hasText: HUMAN }).waitFor(WAIT);
  await phone.getByTestId("sandbox-business").filter({ hasText: HUMAN }).waitFor(WAIT);
  await shot(center, "5-human-reply");
  await shot(phone, "6-lead-phone");
  await center.getByRole("button", { name: "Hand back to the assistant" }).click();
  await center.getByTestId("conversation-status").filter({ hasText: "bot" }).waitFor(WAIT);

  // -- 5. the figures -------------------------------------------------------------------------
  step("analytics");
  await center.getByRole("link", { name: "Analytics" }).click();
  await center.getByTestId("kpis").getByText("Conversations").waitFor(WAIT);
  await shot(center, "7-analytics");
  console.log(`dashboard e2e passed in ${((Date.now() - started) / 1000).toFixed(1)} s; screenshots in ${out}`);
} catch (error) {
  for (const [i, page] of context.pages().entries()) await shot(page, `failure-${i}`).catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
