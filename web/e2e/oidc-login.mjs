// Sign in to the dashboard through the installation's OIDC provider (authorization code + PKCE).
//   TASKPILOT_URL=… EXPECT_TENANT=… OUTPUT_DIR=… node e2e/oidc-login.mjs
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.TASKPILOT_URL.replace(/\/$/, "");
const tenant = process.env.EXPECT_TENANT;
const out = process.env.OUTPUT_DIR ?? "test-output/browser";
mkdirSync(out, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
try {
  await page.goto(`${base}/`);
  await page.getByRole("button", { name: /^Sign in with / }).click({ timeout: 15_000 });
  await page.locator(".sidebar .tenant").filter({ hasText: tenant }).waitFor({ timeout: 15_000 });
  await page.getByText("owner").first().waitFor({ timeout: 15_000 });
  await page.screenshot({ path: join(out, "8-oidc-signed-in.png") });
  console.log("signed in through the OIDC provider");
} catch (error) {
  await page.screenshot({ path: join(out, "failure-oidc.png") }).catch(() => {});
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
