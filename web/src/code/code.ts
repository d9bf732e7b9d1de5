// The member's code page: a large, crisp QR of a fresh code, its digits, its expiry with a
// countdown, a new code once it is used or expires, the usage record and revocation. The
// session comes in the address's fragment from the home centre's app; no ID number is handled.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { MemberPageService } from "../gen/liangma/v1/member_pb";
import type { IssueCodeResponse } from "../gen/liangma/v1/issuer_pb";
import type { UsageEntry } from "../gen/liangma/v1/usage_pb";
import { Verdict } from "../gen/liangma/v1/common_pb";
import { Purpose } from "../gen/liangma/v1/code_pb";

type Language = "zh" | "en";
let language: Language = localStorage.getItem("liangma.language") === "en" ? "en" : "zh";

const WORDS: Record<string, Record<Language, string>> = {
  title: { zh: "住房公积金亮码", en: "Provident fund code" },
  language: { zh: "English", en: "中文" },
  purposeLabel: { zh: "办理业务", en: "For" },
  "purpose-1": { zh: "异地贷款", en: "Off-site loan" },
  "purpose-2": { zh: "缴存证明", en: "Deposit certificate" },
  "purpose-3": { zh: "贷款结清证明", en: "Loan settlement" },
  qrAlt: { zh: "亮码二维码，请出示给柜员扫描", en: "QR code to show at the counter" },
  brightness: { zh: "出示时请调高屏幕亮度", en: "Turn the screen brightness up when you show it" },
  digitsLabel: { zh: "数字码（扫码失败时念给柜员）", en: "Digits (read them out if the scan fails)" },
  networkPrefix: { zh: "外地中心柜台：", en: "At another centre's counter: " },
  expires: { zh: "有效至 {at}，剩余 {left}", en: "Valid until {at}, {left} left" },
  renew: { zh: "换一个码", en: "New code" },
  revoke: { zh: "作废此码", en: "Revoke this code" },
  usageTitle: { zh: "使用记录", en: "Usage record" },
  noUsage: { zh: "暂无记录", en: "No checks yet" },
  used: { zh: "亮码已被使用，已为您换新码。", en: "Your code was used; here is a new one." },
  expired: { zh: "亮码已过期，已为您换新码。", en: "Your code expired; here is a new one." },
  revoked: { zh: "已作废，已为您换新码。", en: "Revoked; here is a new code." },
  noSession: { zh: "会话已过期，请从公积金 App 重新打开本页。", en: "The session ended: open this page again from the provident fund app." },
  unavailable: { zh: "服务暂时不可用，请稍后重试。", en: "The service is unavailable; try again shortly." },
  notPublished: { zh: "缴存地中心尚未发布您的缴存信息，暂不能生成亮码。", en: "Your home centre has not published your deposit status yet." },
  centre: { zh: "中心", en: "centre" },
};

const RESULTS: Partial<Record<Verdict, Record<Language, string>>> = {
  [Verdict.VALID]: { zh: "核验通过", en: "verified" },
  [Verdict.ALREADY_USED]: { zh: "重复出示（已使用）", en: "shown again (already used)" },
  [Verdict.CODE_REVOKED]: { zh: "已作废的码", en: "a revoked code" },
  [Verdict.EXPIRED]: { zh: "过期的码", en: "an expired code" },
  [Verdict.DOUBLE_USE]: { zh: "重复使用（已上报）", en: "double use (reported)" },
};

const element = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const word = (key: string) => WORDS[key]?.[language] ?? key;
const session = new URLSearchParams(location.hash.slice(1)).get("session") ?? "";
// The session stays in this page only: drop it from the address bar and the history.
history.replaceState(null, "", location.pathname);

const client = createClient(MemberPageService, createGrpcWebTransport({ baseUrl: location.origin }));
let current: IssueCodeResponse | undefined;
let usage: UsageEntry[] = [];

function notice(key: string): void {
  element("notice").textContent = key ? word(key) : "";
}

function failure(error: unknown): void {
  const code = error instanceof ConnectError ? error.code : Code.Unknown;
  element("code").hidden = code === Code.Unauthenticated;
  notice(code === Code.Unauthenticated ? "noSession" : code === Code.NotFound ? "notPublished" : "unavailable");
}

function localTime(unix: bigint): string {
  return new Date(Number(unix) * 1000).toLocaleString(language === "zh" ? "zh-CN" : "en-GB", { hour12: false });
}

/** Integer module scaling: the QR's pixels land on whole screen pixels. */
function placeQr(svg: string): void {
  const image = element<HTMLImageElement>("qr");
  const modules = Number(/width="(\d+)"/.exec(svg)?.[1] ?? 57);
  const room = Math.min(element("code").clientWidth - 32, 420) * devicePixelRatio;
  const scale = Math.max(1, Math.floor(room / modules));
  const side = (modules * scale) / devicePixelRatio;
  image.width = side;
  image.height = side;
  image.src = URL.createObjectURL(new Blob([svg], { type: "image/svg+xml" }));
}

function renderCode(): void {
  if (!current) return;
  element("code").hidden = false;
  placeQr(current.qrSvg);
  element("digits").textContent = current.digits;
  element("network-digits").textContent = word("networkPrefix") + current.networkDigits;
  tick();
}

function tick(): void {
  if (!current) return;
  const left = Number(current.expiresAtUnix) - Math.floor(Date.now() / 1000);
  if (left <= 0) {
    void newCode("expired");
    return;
  }
  const hours = Math.floor(left / 3600);
  const minutes = Math.floor((left % 3600) / 60).toString().padStart(2, "0");
  const seconds = (left % 60).toString().padStart(2, "0");
  element("expiry").textContent = word("expires")
    .replace("{at}", localTime(current.expiresAtUnix))
    .replace("{left}", `${hours}:${minutes}:${seconds}`);
}

async function newCode(reason?: string): Promise<void> {
  try {
    current = await client.showCode({ session, purpose: Number(element<HTMLSelectElement>("purpose").value) as Purpose });
    notice(reason ?? "");
    renderCode();
  } catch (error) {
    failure(error);
  }
}

function renderUsage(): void {
  element("usage-section").hidden = false;
  const list = element("usage");
  list.replaceChildren();
  if (usage.length === 0) {
    const empty = document.createElement("li");
    empty.textContent = word("noUsage");
    list.append(empty);
  }
  for (const entry of usage) {
    const item = document.createElement("li");
    const result = document.createElement("span");
    result.className = `result ${entry.result === Verdict.VALID ? "ok" : "bad"}`;
    result.textContent = RESULTS[entry.result]?.[language] ?? Verdict[entry.result] ?? "";
    const repeated = entry.count > 1 ? ` ×${entry.count}` : "";
    const purpose = word(`purpose-${entry.purpose}`);
    item.append(`${localTime(entry.atUnix)} · ${word("centre")} ${entry.centre} · ${purpose} · `, result, repeated);
    list.append(item);
  }
}

async function refreshUsage(): Promise<void> {
  try {
    usage = (await client.listMyUsage({ session })).entries;
    renderUsage();
    // The code on screen was verified: show the next one, as the paper certificate it replaces
    // would be handed over.
    if (current && usage.some((entry) => entry.codeId === current!.codeId && entry.result === Verdict.VALID)) {
      await newCode("used");
    }
  } catch (error) {
    failure(error);
  }
}

function applyLanguage(): void {
  document.documentElement.lang = language === "zh" ? "zh-CN" : "en";
  document.title = word("title");
  for (const id of ["title", "language", "renew", "revoke", "brightness", "purpose-1", "purpose-2", "purpose-3"]) {
    element(id).textContent = word(id);
  }
  element("purpose-label").textContent = word("purposeLabel");
  element("digits-label").textContent = word("digitsLabel");
  element("usage-title").textContent = word("usageTitle");
  element<HTMLImageElement>("qr").alt = word("qrAlt");
  if (current) element("network-digits").textContent = word("networkPrefix") + current.networkDigits;
  tick();
  renderUsage();
}

element("language").addEventListener("click", () => {
  language = language === "zh" ? "en" : "zh";
  localStorage.setItem("liangma.language", language);
  applyLanguage();
});
element("renew").addEventListener("click", () => void newCode());
element("purpose").addEventListener("change", () => void newCode());
element("revoke").addEventListener("click", async () => {
  if (!current) return;
  try {
    await client.revokeMyCode({ session, codeId: current.codeId });
    await newCode("revoked");
    await refreshUsage();
  } catch (error) {
    failure(error);
  }
});

applyLanguage();
if (!session) {
  notice("noSession");
} else {
  void newCode().then(refreshUsage);
  setInterval(tick, 1000);
  setInterval(() => void refreshUsage(), 3000);
}
