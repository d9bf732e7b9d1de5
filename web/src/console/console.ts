// The counter console: scanner (keyboard wedge), camera and typed digits in; the verdict out, as
// a clerk with a queue needs it. Talks to the service through gRPC-web, with the client
// generated from proto/.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import jsQR from "jsqr";
import { VerifierService, type VerifyCodeResponse } from "../gen/liangma/v1/verifier_pb";
import { LoanService, HouseKind, type EvaluateOffsiteLoanResponse } from "../gen/liangma/v1/loan_pb";
import { Verdict, type DepositStatus } from "../gen/liangma/v1/common_pb";
import {
  ACCOUNT_STATUS, CAPS, LOAN_STATE, LOAN_WORDS, PARTIES, REASONS, UNKNOWN, VERDICTS, WORDS, type Language, type Tone,
} from "./text";

const transport = createGrpcWebTransport({ baseUrl: location.origin });
const verifier = createClient(VerifierService, transport);
const loans = createClient(LoanService, transport);

const HISTORY_KEPT = 20;

let language: Language = localStorage.getItem("liangma.language") === "en" ? "en" : "zh";
let lastShown: { response?: VerifyCodeResponse; error?: string } = {};
const history: { at: Date; tone: Tone; words: Record<Language, string>; member: string }[] = [];

const element = <T extends HTMLElement>(id: string): T => {
  const found = document.getElementById(id);
  if (!found) throw new Error(`#${id} missing`);
  return found as T;
};

const input = element<HTMLInputElement>("code-input");

function word(key: string): string {
  return WORDS[key]?.[language] ?? LOAN_WORDS[key]?.[language] ?? key;
}

function applyLanguage(): void {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  document.title = `${word("title")} · liangma`;
  const texts: [string, string][] = [
    ["title", "title"], ["language", "language"], ["entry-label", "entryLabel"], ["entry-hint", "entryHint"],
    ["check", "check"], ["figures-caption", "figuresCaption"], ["col-field", "colField"],
    ["col-claimed", "colClaimed"], ["col-live", "colLive"], ["history-title", "historyTitle"],
  ];
  const loanTexts: [string, string][] = [
    ["loan-title", "loanTitle"], ["house-price-label", "housePriceLabel"], ["house-kind-label", "houseKindLabel"],
    ["house-new", "houseNew"], ["house-second-hand", "houseSecondHand"], ["building-age-label", "buildingAgeLabel"],
    ["term-label", "termLabel"], ["co-borrower-label", "coBorrowerLabel"], ["evaluate", "evaluate"],
  ];
  for (const [id, key] of [...texts, ...loanTexts]) element(id).textContent = word(key);
  if (lastLoan) showLoan(lastLoan);
  element("camera").textContent = word(scanning ? "cameraStop" : "camera");
  if (lastShown.response) show(lastShown.response, false);
  else if (lastShown.error) showError(lastShown.error, false);
  else element("verdict-words").textContent = word("waiting");
  renderHistory();
}

/** 1234567 fen -> "12,345.67 元". */
function yuan(fen: bigint): string {
  const whole = fen / 100n;
  const cents = (fen % 100n).toString().padStart(2, "0");
  return `${whole.toLocaleString(language === "zh" ? "zh-CN" : "en-US")}.${cents} ${word("yuan")}`;
}

function localTime(unix: bigint): string {
  return new Date(Number(unix) * 1000).toLocaleString(language === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

function figures(status: DepositStatus | undefined): Record<string, string> {
  if (!status) return {};
  return {
    accountStatus: ACCOUNT_STATUS[status.accountStatus]?.[language] ?? "?",
    balance: yuan(status.balanceFen),
    monthlyDeposit: yuan(status.monthlyDepositFen),
    continuousMonths: `${status.continuousMonths} ${word("months")}`,
    loanState: LOAN_STATE[status.loanState]?.[language] ?? "?",
    loansUsed: String(status.loansUsed),
    registryVersion: status.registryVersion.toString(),
  };
}

/** API field names (differences) -> the rows above. */
const DIFFERENCE_ROWS: Record<string, string> = {
  account_status: "accountStatus", balance_fen: "balance", monthly_deposit_fen: "monthlyDeposit",
  continuous_months: "continuousMonths", loan_state: "loanState", loans_used: "loansUsed",
  registry_version: "registryVersion",
};

function setTone(tone: Tone | "idle"): void {
  element("result").className = `result ${tone}`;
}

function show(response: VerifyCodeResponse, fresh: boolean): void {
  lastShown = { response };
  const text = VERDICTS[response.verdict] ?? UNKNOWN;
  setTone(text.tone);
  element("verdict-icon").textContent = text.icon;
  element("verdict-words").textContent = text.words[language];
  const detail = response.detail && text.tone !== "valid" ? ` (${response.detail})` : "";
  element("verdict-advice").textContent = text.advice[language] + detail;
  const details = element("details");
  const live = response.live?.found ? response.live : undefined;
  const claims = response.claims;
  details.hidden = !claims;
  const member = live ? `${word("member")}：${live.maskedName}　${live.maskedIdNumber}` : "";
  element("member").textContent = live ? member : response.verdict === Verdict.VALID ? word("noLive") : "";
  const previous = element("previous");
  previous.hidden = !response.previousUse;
  if (response.previousUse) {
    previous.textContent = word("usedBy")
      .replace("{at}", localTime(response.previousUse.usedAtUnix))
      .replace("{centre}", response.previousUse.centre);
  }
  const body = element("figures-body");
  body.replaceChildren();
  const claimed = figures(claims?.deposit);
  const current = figures(live?.status);
  const differing = new Set(response.differences.map((name) => DIFFERENCE_ROWS[name]));
  for (const key of Object.keys(claimed)) {
    const row = document.createElement("tr");
    if (differing.has(key)) row.className = "differs";
    const cells = [word(key), claimed[key], current[key] ?? "—"];
    cells.forEach((value, index) => {
      const cell = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) cell.setAttribute("scope", "row");
      cell.textContent = value;
      row.append(cell);
    });
    body.append(row);
  }
  element("code-facts").textContent = claims
    ? `${word("issuer")} ${claims.issuerCentre} · ${word("expires")} ${localTime(claims.expiresAtUnix)} · ${claims.codeId}`
    : "";
  // A VALID verification opens the loan evaluation for this borrower.
  if (fresh) {
    borrowerVerification = response.verdict === Verdict.VALID ? response.verificationId : "";
    element("loan").hidden = !borrowerVerification;
    element("loan-result").replaceChildren();
    lastLoan = undefined;
  }
  if (fresh) {
    beep(text.tone);
    history.unshift({ at: new Date(), tone: text.tone, words: text.words, member: live ? `${live.maskedName}` : "" });
    history.length = Math.min(history.length, HISTORY_KEPT);
    renderHistory();
  }
}

function showError(message: string, fresh: boolean): void {
  lastShown = { error: message };
  setTone("warn");
  element("verdict-icon").textContent = "!";
  element("verdict-words").textContent = word(message === "refused" ? "refused" : "serviceError");
  element("verdict-advice").textContent = "";
  element("details").hidden = true;
  if (fresh) beep("warn");
}

function renderHistory(): void {
  const list = element("history");
  list.replaceChildren();
  for (const entry of history) {
    const item = document.createElement("li");
    const mark = document.createElement("span");
    mark.className = `mark ${entry.tone === "valid" ? "ok" : "bad"}`;
    mark.textContent = entry.tone === "valid" ? "✓" : entry.tone === "warn" ? "!" : "✕";
    mark.setAttribute("aria-hidden", "true");
    const time = document.createElement("span");
    time.textContent = entry.at.toLocaleTimeString(language === "zh" ? "zh-CN" : "en-GB", { hour12: false });
    const words = document.createElement("span");
    words.textContent = `${entry.words[language]} ${entry.member}`;
    item.append(mark, time, words);
    list.append(item);
  }
}

let audio: AudioContext | undefined;
/** One short tone for VALID, two low ones for a refusal, one low for a warning. */
function beep(tone: Tone): void {
  try {
    audio ??= new AudioContext();
    const notes = tone === "valid" ? [880] : tone === "invalid" ? [220, 220] : [330];
    notes.forEach((frequency, index) => {
      const oscillator = audio!.createOscillator();
      const gain = audio!.createGain();
      gain.gain.value = 0.15;
      oscillator.frequency.value = frequency;
      oscillator.connect(gain).connect(audio!.destination);
      const start = audio!.currentTime + index * 0.18;
      oscillator.start(start);
      oscillator.stop(start + 0.12);
    });
  } catch {
    // No audio device: the screen says it all.
  }
}

/** The digits form: 16 digits, or 22 led by a centre code; spaces and hyphens allowed. */
function isDigits(text: string): boolean {
  return /^[0-9 -]+$/.test(text) && [16, 22].includes(text.replace(/[ -]/g, "").length);
}

let busy = Promise.resolve();
/** Verifies one code; scans queue behind each other so the screen shows each in turn. */
function verify(raw: string): Promise<void> {
  const text = raw.replace(/[\r\n]+$/, "");
  if (!text.trim()) return busy;
  busy = busy.then(async () => {
    element("verdict-words").textContent = word("checking");
    const request = {
      code: isDigits(text) ? { case: "digits" as const, value: text } : { case: "text" as const, value: text },
      requestId: crypto.randomUUID(),
    };
    try {
      show(await verifier.verifyCode(request, { timeoutMs: 10_000 }), true);
    } catch (error) {
      const code = error instanceof ConnectError ? error.code : Code.Unknown;
      showError(code === Code.PermissionDenied || code === Code.Unauthenticated ? "refused" : "unavailable", true);
    }
  });
  return busy;
}

// The loan evaluation, for the borrower of the last VALID verification.
let borrowerVerification = "";
let lastLoan: EvaluateOffsiteLoanResponse | undefined;

function yuanText(fen: bigint): string {
  return yuan(fen);
}

function showLoan(result: EvaluateOffsiteLoanResponse): void {
  lastLoan = result;
  const out = element("loan-result");
  out.replaceChildren();
  const line = (className: string, text: string, tag = "p") => {
    const node = document.createElement(tag);
    node.className = className;
    node.textContent = text;
    out.append(node);
    return node;
  };
  if (result.eligible) {
    line("amount", `${word("maxAmount")}：${yuanText(result.maxAmountFen)}`);
    let term = word("maxTerm").replace("{years}", String(result.maxTermYears));
    if (result.requestedTermAllowed === false) term += `（${word("termTooLong")}）`;
    line("decided", `${word("decidedBy").replace("{cap}", CAPS[result.decidedBy]?.[language] ?? result.decidedBy)} · ${term}`);
  } else {
    line("not-eligible", word("notEligible"));
    const reasons = document.createElement("ul");
    for (const reason of result.reasons) {
      const item = document.createElement("li");
      item.textContent = `${PARTIES[reason.party]?.[language] ?? reason.party}：${REASONS[reason.reason]?.[language] ?? reason.reason}`;
      reasons.append(item);
    }
    out.append(reasons);
  }
  line("", word("steps"), "h3");
  const steps = document.createElement("ol");
  steps.className = "steps";
  for (const step of result.steps) {
    const item = document.createElement("li");
    item.textContent = step.amountFen === undefined ? step.description : `${step.description}：${yuanText(step.amountFen)}`;
    steps.append(item);
  }
  out.append(steps);
  line("", word("figuresSource"), "h3");
  const table = document.createElement("table");
  for (const figure of result.figures) {
    const row = document.createElement("tr");
    for (const value of [figure.name, figure.value, figure.source]) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.append(cell);
    }
    table.append(row);
  }
  out.append(table);
}

function wholeYears(id: string): number | undefined | null {
  const text = element<HTMLInputElement>(id).value.trim();
  if (!text) return undefined;
  return /^\d{1,3}$/.test(text) ? Number(text) : null;
}

element("house-kind").addEventListener("change", () => {
  element("building-age-field").hidden = element<HTMLSelectElement>("house-kind").value !== "2";
});
// A scanner typing into the co-borrower field ends with Enter: that is the code, not a submit.
element("co-borrower").addEventListener("keydown", (event) => {
  if (event.key === "Enter") event.preventDefault();
});
element("loan-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const out = element("loan-result");
  const error = (text: string) => {
    out.replaceChildren();
    const node = document.createElement("p");
    node.className = "loan-error";
    node.textContent = text;
    out.append(node);
  };
  const price = element<HTMLInputElement>("house-price").value.replace(/[,，\s]/g, "");
  if (!/^\d+(\.\d{1,2})?$/.test(price) || Number(price) <= 0) return error(word("badPrice"));
  const [whole, cents = ""] = price.split(".");
  const priceFen = BigInt(whole) * 100n + BigInt(cents.padEnd(2, "0"));
  const secondHand = element<HTMLSelectElement>("house-kind").value === "2";
  const age = secondHand ? wholeYears("building-age") : undefined;
  const term = wholeYears("term");
  if (age === null || term === null || term === 0) return error(word("badNumber"));
  const coText = element<HTMLInputElement>("co-borrower").value.trim();
  try {
    const result = await loans.evaluateOffsiteLoan(
      {
        borrower: { code: { case: "verificationId", value: borrowerVerification } },
        coBorrower: coText
          ? { code: isDigits(coText) ? { case: "digits", value: coText } : { case: "text", value: coText } }
          : undefined,
        housePriceFen: priceFen,
        houseKind: secondHand ? HouseKind.SECOND_HAND : HouseKind.NEW,
        buildingAgeYears: age ?? 0,
        requestedTermYears: term ?? 0,
        requestId: crypto.randomUUID(),
      },
      { timeoutMs: 10_000 },
    );
    showLoan(result);
  } catch (failure) {
    error(word("loanRefused") + (failure instanceof ConnectError ? failure.rawMessage : String(failure)));
  }
});

// A keyboard-wedge scanner types the code and Enter; several lines at once are several codes.
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter") {
    event.preventDefault();
    const lines = input.value.split(/\r?\n/);
    input.value = "";
    for (const line of lines) void verify(line);
  }
});
input.addEventListener("paste", (event) => {
  const pasted = event.clipboardData?.getData("text") ?? "";
  if (pasted.includes("\n")) {
    event.preventDefault();
    for (const line of pasted.split(/\r?\n/)) void verify(line);
  }
});
element("check").addEventListener("click", () => {
  const value = input.value;
  input.value = "";
  void verify(value);
  input.focus();
});
element("language").addEventListener("click", () => {
  language = language === "zh" ? "en" : "zh";
  localStorage.setItem("liangma.language", language);
  applyLanguage();
});

// Focus comes back to the input after any click elsewhere, so the scanner always types into it.
document.addEventListener("click", (event) => {
  const target = event.target;
  const inForm = target instanceof HTMLElement && target.closest("#loan-form");
  if (!(target instanceof HTMLInputElement) && !inForm) setTimeout(() => input.focus(), 0);
});
window.addEventListener("focus", () => input.focus());

// The camera: the browser's BarcodeDetector where present, otherwise jsQR on video frames.
let scanning = false;
let stream: MediaStream | undefined;
/** The code the camera read last: a phone held up keeps showing it, and that is one scan. */
let lastCamera = "";

interface Detector { detect(source: CanvasImageSource): Promise<{ rawValue: string }[]> }
declare const BarcodeDetector: { new (options: { formats: string[] }): Detector } | undefined;

async function startCamera(): Promise<void> {
  const video = element<HTMLVideoElement>("preview");
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } });
  } catch {
    showError("unavailable", false);
    element("verdict-advice").textContent = word("cameraUnavailable");
    return;
  }
  video.srcObject = stream;
  video.hidden = false;
  await video.play();
  scanning = true;
  lastCamera = "";
  element("camera").textContent = word("cameraStop");
  const detector = typeof BarcodeDetector === "function" ? new BarcodeDetector({ formats: ["qr_code"] }) : undefined;
  const canvas = document.createElement("canvas");
  const context = canvas.getContext("2d", { willReadFrequently: true })!;
  const frame = async (): Promise<void> => {
    if (!scanning) return;
    let found: string | undefined;
    if (video.videoWidth > 0) {
      if (detector) {
        found = (await detector.detect(video).catch(() => []))[0]?.rawValue;
      } else {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        context.drawImage(video, 0, 0);
        found = jsQR(context.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height)?.data;
      }
    }
    if (found && found !== lastCamera) {
      lastCamera = found;
      await verify(found);
    }
    setTimeout(() => void frame(), 120);
  };
  void frame();
}

function stopCamera(): void {
  scanning = false;
  stream?.getTracks().forEach((track) => track.stop());
  element<HTMLVideoElement>("preview").hidden = true;
  element("camera").textContent = word("camera");
}

element("camera").addEventListener("click", () => (scanning ? stopCamera() : void startCamera()));

applyLanguage();
setTone("idle");
input.focus();
