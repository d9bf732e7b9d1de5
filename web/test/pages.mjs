// The pages in a real browser (Debian's chromium, headless, through playwright-core), against a
// real `liangma serve` (dev setup) with codes issued by the CLI:
// - the counter console fed by a fake camera playing a code's QR, by a keyboard-wedge scanner
//   and by typed digits;
// - the member's code page opened through a backend session: its QR read back from a screenshot
//   by zbarimg and verified, a new code after use, revocation.
// Checks what clerks and members rely on, runs axe-core, and saves a screenshot of each state.
//   LIANGMA_BIN=../target/debug/liangma SCREENSHOT_DIR=../target/screenshots node test/pages.mjs
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = fileURLToPath(new URL(".", import.meta.url));
const binary = resolve(process.env.LIANGMA_BIN ?? join(here, "../../target/debug/liangma"));
const shots = resolve(process.env.SCREENSHOT_DIR ?? join(here, "../../target/screenshots"));
mkdirSync(shots, { recursive: true });
const scratch = mkdtempSync(join(tmpdir(), "liangma-console-"));
const ZHANG_WEI = "410802198503120012";
const WANG_FANG = "410803199207040027";

function fail(message) {
  console.error(`pages test: ${message}`);
  process.exitCode = 1;
  throw new Error(message);
}
function check(condition, message) {
  if (!condition) fail(message);
}

const port = await new Promise((done) => {
  const probe = createServer().listen(0, "127.0.0.1", () => {
    const { port } = probe.address();
    probe.close(() => done(port));
  });
});
const server = spawn(binary, ["serve"], {
  env: { PATH: process.env.PATH, LIANGMA_LISTEN: `127.0.0.1:${port}`, LIANGMA_DATA_DIR: join(scratch, "data"), LIANGMA_LOG: "warn" },
  stdio: ["ignore", "ignore", "inherit"],
});
const origin = `http://127.0.0.1:${port}`;
let browser;
try {
  for (let attempt = 0; ; attempt++) {
    try {
      await fetch(`${origin}/console/`);
      break;
    } catch {
      check(attempt < 200, "liangma serve did not start");
      await new Promise((wait) => setTimeout(wait, 100));
    }
  }

  /** Issues a code for a sample member at the Shenzhen counter: [text, digits]. */
  const issue = (idNumber, png) => {
    const args = ["client", "--server", origin, "issue", "--issuer", "410800", "--id-number", idNumber, "--audience", "440300"];
    if (png) args.push("--png", png);
    const output = execFileSync(binary, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    return output.trim();
  };
  const issueWithDigits = (idNumber) => {
    const result = spawnSyncText(["client", "--server", origin, "issue", "--issuer", "410800", "--id-number", idNumber, "--audience", "440300"]);
    const digits = result.stderr.match(/digits ([0-9 ]+?)\s+\(/)?.[1];
    check(digits, `no digits in: ${result.stderr}`);
    return { text: result.stdout.trim(), digits };
  };

  // The camera plays the QR of a fresh code (a still picture as a short clip).
  const png = join(scratch, "camera.png");
  const cameraCode = issue(ZHANG_WEI, png);
  const clip = join(scratch, "camera.y4m");
  execFileSync("ffmpeg", [
    "-loglevel", "error", "-loop", "1", "-i", png, "-t", "2", "-r", "10",
    "-vf", "scale=480:480:flags=neighbor,pad=640:480:(ow-iw)/2:(oh-ih)/2:white,format=yuv420p", "-y", clip,
  ]);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-video-capture=${clip}`,
      "--autoplay-policy=no-user-gesture-required",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, permissions: ["camera"] });
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (error) => pageErrors.push(String(error)));
  await page.goto(`${origin}/`);
  check(page.url() === `${origin}/console/`, `/ leads to the console, not ${page.url()}`);
  check((await page.evaluate(() => document.activeElement?.id)) === "code-input", "the code input has the focus");
  const words = () => page.textContent("#verdict-words");
  const waitFor = async (expected) => {
    await page.waitForFunction((text) => document.getElementById("verdict-words")?.textContent === text, expected, { timeout: 20_000 })
      .catch(async () => fail(`expected "${expected}", the screen says "${await words()}"`));
  };
  const shoot = (name) => page.screenshot({ path: join(shots, `console-${name}.png`), fullPage: true });

  // 1. Camera.
  await page.click("#camera");
  await waitFor("有效 · 已核销");
  check((await page.textContent("#member")).includes("张*"), "the masked member is shown");
  await shoot("camera-valid");
  // The phone stays in front of the camera: still one scan.
  await page.waitForTimeout(1500);
  check((await words()) === "有效 · 已核销", "a code held up is scanned once");
  await page.click("#camera");
  // Shown again later (the camera restarted): ALREADY_USED, when and where.
  await page.click("#camera");
  await waitFor("已使用");
  check((await page.textContent("#previous")).includes("440300"), "the second camera scan says where it was used");
  await page.click("#camera");
  check(cameraCode.startsWith("LM1:"), "a code was issued for the camera");

  // 2. A keyboard-wedge scanner: the code and Enter typed into the focused input.
  const scanned = issue(WANG_FANG);
  await page.keyboard.type(scanned + "\n");
  await waitFor("有效 · 已核销");
  check((await page.$$("#figures-body tr")).length === 7, "claims and live status side by side");
  await shoot("valid");

  // The loan tab opens for the VALID borrower: this centre's policy, step by step.
  check(await page.isVisible("#loan"), "the loan evaluation is offered after a VALID scan");
  await page.fill("#house-price", "700000");
  await page.selectOption("#house-kind", "2");
  await page.fill("#building-age", "8");
  await page.click("#evaluate");
  await page.waitForSelector("#loan-result .amount, #loan-result .not-eligible", { timeout: 10_000 });
  check((await page.$$("#loan-result .steps li")).length >= 3, "the steps of the evaluation are shown");
  const outcome = await page.textContent("#loan-result");
  check(/可贷最高额度|不符合贷款条件/.test(outcome), `an outcome in plain words: ${outcome.slice(0, 80)}`);
  await shoot("loan");
  await page.click("#code-input");

  // 3. The same code again: ALREADY_USED, when and where.
  await page.keyboard.type(scanned + "\n");
  await waitFor("已使用");
  const previous = await page.textContent("#previous");
  check(previous.includes("440300") && /\d{1,2}:\d{2}/.test(previous), `when and where: ${previous}`);
  await shoot("already-used");

  // 4. Digits read out by the member.
  const { digits } = issueWithDigits(ZHANG_WEI);
  await page.keyboard.type(digits + "\n");
  await waitFor("有效 · 已核销");

  // 5. A tampered code: the signature no longer matches, and the screen says so.
  const genuine = issue(WANG_FANG);
  const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
  const at = genuine.length - 2;
  const lowered = alphabet[alphabet.indexOf(genuine[at]) - 1] ?? alphabet[alphabet.indexOf(genuine[at]) + 1];
  await page.keyboard.type(genuine.slice(0, at) + lowered + genuine.slice(at + 1) + "\n");
  await waitFor("签名无效");
  check((await page.textContent("#verdict-advice")).includes("篡改"), "the reason in plain words");
  await shoot("tampered");

  // Colour is never alone: an icon and words say the same.
  check((await page.textContent("#verdict-icon")) === "✕", "an icon with the colour");
  check((await page.$$("#history li")).length === 6, "the counter's history lists every check");

  // 6. Accessibility: no serious or critical violation, on a screen with every part filled
  // (a context of its own that lets axe-core's script in past the page's CSP).
  const audit = await (await browser.newContext({ viewport: { width: 1366, height: 768 }, bypassCSP: true })).newPage();
  await audit.goto(`${origin}/console/`);
  await audit.keyboard.type(scanned + "\n");
  await audit.waitForFunction(() => document.getElementById("verdict-words")?.textContent === "已使用");
  await audit.addScriptTag({ path: join(here, "../node_modules/axe-core/axe.min.js") });
  const violations = await audit.evaluate(async () =>
    (await window.axe.run(document)).violations.filter((v) => ["serious", "critical"].includes(v.impact)).map((v) => `${v.id}: ${v.help}`),
  );
  check(violations.length === 0, `axe-core: ${violations.join("; ")}`);

  // 7. English, and a 768-wide tablet without sideways scrolling.
  await page.click("#language");
  await waitFor("BAD SIGNATURE");
  await shoot("english");
  await page.setViewportSize({ width: 768, height: 1024 });
  check((await page.evaluate(() => document.documentElement.scrollWidth)) <= 768, "no horizontal scroll at 768 px");
  await shoot("tablet");
  check(pageErrors.length === 0, `errors in the page: ${pageErrors.join("; ")}`);

  // The member's code page, on a phone-sized screen, opened with a session from the backend.
  const opened = spawnSyncText(["client", "--server", origin, "member-page", "--issuer", "410800", "--id-number", ZHANG_WEI]);
  const pageUrl = opened.stdout.trim();
  check(pageUrl.startsWith(`${origin}/code/#session=`), `a page address: ${pageUrl}`);
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  phone.on("pageerror", (error) => pageErrors.push(String(error)));
  await phone.goto(pageUrl);
  const qrShown = () =>
    phone.waitForFunction(() => {
      const image = document.getElementById("qr");
      return image?.complete && image.naturalWidth > 0 && document.getElementById("digits")?.textContent;
    });
  await qrShown();
  check(!phone.url().includes("session"), "the session leaves the address bar");
  check((await phone.textContent("#expiry")).includes("剩余"), "the expiry counts down");
  /** The code on the phone's screen, as a counter's scanner would read it. */
  const readScreen = async (name) => {
    const path = join(shots, `code-${name}.png`);
    await phone.screenshot({ path });
    const decoded = spawnSync("zbarimg", ["--raw", "-q", "-Sdisable", "-Sqrcode.enable", path], { encoding: "utf8" });
    check(decoded.status === 0, `zbarimg read no code from ${path}`);
    return decoded.stdout.trim();
  };
  const shown = await readScreen("page");
  check(shown.startsWith("LM1:"), `the screenshot holds a code: ${shown.slice(0, 12)}`);
  const firstDigits = await phone.textContent("#digits");
  const counter = spawnSync(binary, ["client", "--server", origin, "verify", shown], { encoding: "utf8" });
  check(counter.status === 0 && counter.stdout.startsWith("VALID"), `the counter verifies the screen's code: ${counter.stdout}`);
  // Used at the counter: the page shows a new code and the check in the usage record.
  await phone.waitForFunction((before) => document.getElementById("digits")?.textContent !== before, firstDigits, { timeout: 15_000 })
    .catch(() => fail("no new code after the code was used"));
  await phone.waitForFunction(() => document.getElementById("usage")?.textContent?.includes("440300"));
  check((await phone.textContent("#usage")).includes("异地贷款 · 核验通过"), "who, when, for what and the result");
  check((await phone.textContent("#notice")).includes("已被使用"), "the member is told why the code changed");
  await qrShown();
  await phone.screenshot({ path: join(shots, "code-after-use.png"), fullPage: true });
  // Revocation (a lost phone): the code on screen no longer verifies anywhere.
  const beforeRevoke = await readScreen("before-revoke");
  check(beforeRevoke !== shown, "a different code after use");
  await phone.click("#revoke");
  await phone.waitForFunction(() => document.getElementById("notice")?.textContent?.includes("作废"));
  const revoked = spawnSync(binary, ["client", "--server", origin, "verify", beforeRevoke], { encoding: "utf8" });
  check(revoked.stdout.startsWith("CODE_REVOKED"), `a revoked code is refused: ${revoked.stdout}`);
  // Without a session there is nothing to show but the way back.
  const stranger = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  await stranger.goto(`${origin}/code/#session=${"0".repeat(64)}`);
  await stranger.waitForFunction(() => document.getElementById("notice")?.textContent?.includes("会话"));
  check(await stranger.isHidden("#code"), "no code without a live session");
  // Accessibility of the member page too.
  const memberAudit = await (await browser.newContext({ viewport: { width: 390, height: 844 }, bypassCSP: true })).newPage();
  const second = spawnSyncText(["client", "--server", origin, "member-page", "--issuer", "410800", "--id-number", WANG_FANG]);
  await memberAudit.goto(second.stdout.trim());
  await memberAudit.waitForFunction(() => document.getElementById("digits")?.textContent);
  await memberAudit.addScriptTag({ path: join(here, "../node_modules/axe-core/axe.min.js") });
  const memberViolations = await memberAudit.evaluate(async () =>
    (await window.axe.run(document)).violations.filter((v) => ["serious", "critical"].includes(v.impact)).map((v) => `${v.id}: ${v.help}`),
  );
  check(memberViolations.length === 0, `axe-core on the code page: ${memberViolations.join("; ")}`);
  check(pageErrors.length === 0, `errors in the pages: ${pageErrors.join("; ")}`);
  console.log(`pages test: passed; screenshots in ${shots}`);
} finally {
  await browser?.close();
  server.kill();
}

function spawnSyncText(args) {
  const result = spawnSync(binary, args, { encoding: "utf8" });
  check(result.status === 0, `liangma ${args.join(" ")}: ${result.stderr}`);
  return result;
}
