// Every word the counter console shows, in Chinese (default) and English.
import { Verdict } from "../gen/liangma/v1/common_pb";

export type Language = "zh" | "en";

/** How a verdict looks at a glance: colour class, icon, and what the clerk does next. */
export type Tone = "valid" | "invalid" | "warn";

export interface VerdictText {
  tone: Tone;
  icon: string;
  words: Record<Language, string>;
  advice: Record<Language, string>;
}

const reject = (zh: string, en: string, adviceZh: string, adviceEn: string): VerdictText => ({
  tone: "invalid",
  icon: "✕",
  words: { zh, en },
  advice: { zh: adviceZh, en: adviceEn },
});

const ASK_NEW_CODE_ZH = "请职工在公积金 App 中重新生成亮码后再扫。";
const ASK_NEW_CODE_EN = "Ask the member to open a new code in the provident fund app and scan again.";

export const VERDICTS: Partial<Record<Verdict, VerdictText>> = {
  [Verdict.VALID]: {
    tone: "valid",
    icon: "✓",
    words: { zh: "有效 · 已核销", en: "VALID · consumed" },
    advice: { zh: "可以受理。下方为码内声明与实时缴存状态。", en: "Accept. The claims and the live deposit status are below." },
  },
  [Verdict.ALREADY_USED]: reject("已使用", "ALREADY USED", "此码已被使用过，不能再次受理。" + ASK_NEW_CODE_ZH, "This code was used before and cannot be accepted again. " + ASK_NEW_CODE_EN),
  [Verdict.CODE_REVOKED]: reject("已作废", "REVOKED", "职工已作废此码（如手机丢失）。请核实身份，并请职工生成新码。", "The member revoked this code (e.g. a lost phone). Check their identity and ask for a new code."),
  [Verdict.EXPIRED]: reject("已过期", "EXPIRED", "亮码当日有效，已过期。" + ASK_NEW_CODE_ZH, "Codes are valid on their day only. " + ASK_NEW_CODE_EN),
  [Verdict.NOT_YET_VALID]: reject("尚未生效", "NOT YET VALID", "签发时间晚于本台时间，请检查本台电脑时钟，或请职工生成新码。", "Issued later than this counter's clock: check the computer's clock, or ask for a new code."),
  [Verdict.MALFORMED]: reject("无法识别", "NOT A CODE", "扫到的内容不是亮码，或数字码输错。请重新扫描或核对数字。", "What was read is not a code, or the digits were mistyped. Scan again or check the digits."),
  [Verdict.UNKNOWN_DIGITS]: reject("数字码无效", "UNKNOWN DIGITS", "没有与此数字码对应的有效亮码。请核对数字；外地中心的码需加 6 位中心代码。", "No live code has these digits. Check them; another centre's code needs its 6-digit centre code first."),
  [Verdict.BAD_SIGNATURE]: reject("签名无效", "BAD SIGNATURE", "此码被篡改或伪造，不能受理。请职工出示公积金 App 中的原始亮码。", "The code was altered or forged: do not accept. Ask for the original code in the provident fund app."),
  [Verdict.UNKNOWN_ISSUER]: reject("签发中心未知", "UNKNOWN ISSUER", "签发中心不在全国信任名单中，不能受理。", "The issuing centre is not in the national trust list: do not accept."),
  [Verdict.UNKNOWN_KEY]: reject("签名密钥未知", "UNKNOWN KEY", "签发密钥不在信任名单中，可能名单未更新。请联系运维，暂不能受理。", "The signing key is not in the trust list (perhaps not yet updated). Call operations; do not accept for now."),
  [Verdict.KEY_REVOKED]: reject("签名密钥已吊销", "KEY REVOKED", "签发中心的密钥已吊销，此码不能受理。" + ASK_NEW_CODE_ZH, "The issuing centre's key was revoked. " + ASK_NEW_CODE_EN),
  [Verdict.KEY_NOT_VALID_AT_ISSUE]: reject("密钥不在有效期", "KEY NOT VALID", "签发时密钥不在有效期内，不能受理。" + ASK_NEW_CODE_ZH, "The key was outside its signing window when the code was issued. " + ASK_NEW_CODE_EN),
  [Verdict.WRONG_PURPOSE]: reject("用途不符", "WRONG PURPOSE", "此码的用途不是本台办理的业务。请职工按本业务重新生成亮码。", "The code is for another purpose than this counter's. Ask for a code for this business."),
  [Verdict.WRONG_AUDIENCE]: reject("非本中心使用", "WRONG CENTRE", "此码指定在其他中心使用。请职工生成给本中心使用的亮码。", "The code names another centre. Ask for a code for this centre."),
  [Verdict.UNSUPPORTED_VERSION]: reject("版本不支持", "UNSUPPORTED VERSION", "亮码版本较新，本系统暂不支持。请联系运维。", "A newer code version than this system reads. Call operations."),
  [Verdict.ISSUER_UNREACHABLE]: {
    tone: "warn",
    icon: "!",
    words: { zh: "暂不能受理", en: "NOT CONSUMED" },
    advice: { zh: "亮码真实，但缴存地中心暂时无法联系，码未核销。请稍后重试，不要受理。", en: "The code is genuine, but the home centre cannot be reached and the code was not consumed. Retry shortly; do not accept yet." },
  },
  [Verdict.VERIFIED_OFFLINE]: {
    tone: "warn",
    icon: "!",
    words: { zh: "离线核验通过", en: "VERIFIED OFFLINE" },
    advice: { zh: "缴存地中心暂时无法联系；按本中心规定先行受理，稍后自动核销，如发现重复使用将上报。", en: "The home centre cannot be reached; accepted under this centre's rule, consumed later; a double use will be reported." },
  },
};

export const UNKNOWN: VerdictText = reject("未知结果", "UNKNOWN RESULT", "请重试；如仍出现请联系运维。", "Try again; if it persists, call operations.");

export const WORDS: Record<string, Record<Language, string>> = {
  title: { zh: "亮码核验台", en: "liangma counter" },
  language: { zh: "English", en: "中文" },
  entryLabel: { zh: "扫码或输入数字码", en: "Scan or type the digits" },
  entryHint: {
    zh: "扫码枪扫描后自动核验；也可输入 16 位数字码（外地中心加 6 位中心代码）后按回车。",
    en: "A scanner verifies at once; or type the 16 digits (another centre's code: its 6-digit centre code first) and press Enter.",
  },
  check: { zh: "核验", en: "Verify" },
  camera: { zh: "摄像头扫码", en: "Scan with camera" },
  cameraStop: { zh: "关闭摄像头", en: "Stop camera" },
  cameraUnavailable: { zh: "无法使用摄像头：请用扫码枪或输入数字码。", en: "The camera cannot be used: use the scanner or type the digits." },
  waiting: { zh: "等待扫码", en: "Waiting for a code" },
  checking: { zh: "核验中…", en: "Verifying…" },
  figuresCaption: { zh: "码内声明与实时状态（不一致处已标出）", en: "Claims in the code and live status (differences marked)" },
  colField: { zh: "项目", en: "Field" },
  colClaimed: { zh: "码内声明", en: "In the code" },
  colLive: { zh: "实时状态", en: "Live" },
  historyTitle: { zh: "本台最近核验", en: "This counter's recent checks" },
  member: { zh: "职工", en: "Member" },
  noLive: { zh: "缴存地中心未发布该职工的实时状态", en: "The home centre has published no live status for this member" },
  usedBy: { zh: "已于 {at} 由 {centre} 使用", en: "Used at {at} by centre {centre}" },
  issuer: { zh: "签发中心", en: "Issuer" },
  expires: { zh: "有效至", en: "Valid until" },
  serviceError: { zh: "核验服务暂时不可用，请稍后重试（码未核销）。", en: "The verification service is unavailable; try again shortly (the code was not consumed)." },
  refused: { zh: "本台无权核验（请联系运维检查证书）。", en: "This counter may not verify (ask operations to check its certificate)." },
  accountStatus: { zh: "账户状态", en: "Account status" },
  balance: { zh: "缴存余额", en: "Balance" },
  monthlyDeposit: { zh: "月缴存额", en: "Monthly deposit" },
  continuousMonths: { zh: "连续缴存月数", en: "Continuous months" },
  loanState: { zh: "贷款状态", en: "Loan" },
  loansUsed: { zh: "已贷次数", en: "Loans used" },
  registryVersion: { zh: "数据版本", en: "Registry version" },
  yuan: { zh: "元", en: "yuan" },
  months: { zh: "个月", en: "months" },
};

export const ACCOUNT_STATUS: Record<number, Record<Language, string>> = {
  1: { zh: "正常", en: "normal" },
  2: { zh: "封存", en: "sealed" },
  3: { zh: "冻结", en: "frozen" },
  4: { zh: "销户", en: "closed" },
};

export const LOAN_STATE: Record<number, Record<Language, string>> = {
  0: { zh: "无贷款", en: "none" },
  1: { zh: "贷款未结清", en: "outstanding" },
  2: { zh: "贷款已结清", en: "settled" },
};

export const LOAN_WORDS: Record<string, Record<Language, string>> = {
  loanTitle: { zh: "异地贷款额度测算（本中心政策）", en: "Off-site loan under this centre's policy" },
  housePriceLabel: { zh: "房屋总价（元）", en: "House price (yuan)" },
  houseKindLabel: { zh: "房屋类型", en: "House" },
  houseNew: { zh: "新房", en: "New" },
  houseSecondHand: { zh: "二手房", en: "Second-hand" },
  buildingAgeLabel: { zh: "房龄（年）", en: "Building age (years)" },
  termLabel: { zh: "申请期限（年，可不填）", en: "Term asked for (years, optional)" },
  coBorrowerLabel: { zh: "共同借款人亮码（可不填：点此后扫码）", en: "Co-borrower's code (optional: click here, then scan)" },
  evaluate: { zh: "测算", en: "Evaluate" },
  maxAmount: { zh: "可贷最高额度", en: "Most that can be lent" },
  maxTerm: { zh: "最长期限 {years} 年", en: "longest term {years} years" },
  termTooLong: { zh: "申请期限超过最长期限", en: "the term asked for exceeds the longest term" },
  decidedBy: { zh: "决定额度的是：{cap}", en: "Decided by: {cap}" },
  notEligible: { zh: "不符合贷款条件", en: "Not eligible" },
  steps: { zh: "测算步骤", en: "Steps" },
  figuresSource: { zh: "依据", en: "Figures used" },
  badPrice: { zh: "请填写房屋总价（正数，元）", en: "Enter the house price (a positive amount in yuan)" },
  badNumber: { zh: "房龄和期限请填写整数", en: "Building age and term are whole years" },
  loanRefused: { zh: "无法测算：", en: "Cannot evaluate: " },
};

export const CAPS: Record<string, Record<Language, string>> = {
  formula: { zh: "余额倍数公式", en: "the balance formula" },
  "absolute-cap": { zh: "最高贷款额度上限", en: "the absolute cap" },
  "price-ratio": { zh: "房价比例上限", en: "the loan-to-price cap" },
};

export const PARTIES: Record<string, Record<Language, string>> = {
  borrower: { zh: "借款人", en: "Borrower" },
  "co-borrower": { zh: "共同借款人", en: "Co-borrower" },
  house: { zh: "房屋", en: "House" },
};

export const REASONS: Record<string, Record<Language, string>> = {
  ACCOUNT_NOT_NORMAL: { zh: "账户状态不正常（封存、冻结或销户）", en: "the account is not in normal status" },
  INSUFFICIENT_CONTINUOUS_DEPOSIT: { zh: "连续缴存月数不足", en: "too few months of continuous deposit" },
  OUTSTANDING_LOAN: { zh: "有未结清的公积金贷款", en: "a provident-fund loan is still being repaid" },
  TOO_MANY_PREVIOUS_LOANS: { zh: "已使用贷款次数超过政策上限", en: "more loans used than the policy allows" },
  NO_BALANCE: { zh: "缴存余额为零", en: "no balance" },
  BALANCE_TOO_LOW: { zh: "余额过低，测算额度为零", en: "the balance is too low for any loan" },
  PRICE_TOO_LOW: { zh: "房价过低，测算额度为零", en: "the house price is too low for any loan" },
  BUILDING_TOO_OLD: { zh: "房龄过长，无可贷期限", en: "the building is too old for any term" },
};
