/**
 * @fileoverview Which currency an amount cell shows. Sheets keeps an amount as
 * a plain number and the currency only in the cell's number format
 * (Format › Number › Currency writes "[$€]#,##0.00", "£#,##0.00",
 * "[$CHF] #,##0.00", "[$¥-411]#,##0"…), so with no currency column the format
 * is the only place the currency is written down.
 */

/**
 * ISO 4217 code of each currency sign Sheets' formats use.
 * @type {Object<string, string>}
 */
const CURRENCY_SIGNS = {
  '€': 'EUR', '£': 'GBP', '¥': 'JPY', '￥': 'JPY', 'CN¥': 'CNY', '元': 'CNY', '₹': 'INR', '₩': 'KRW',
  '₽': 'RUB', '₺': 'TRY', '₪': 'ILS', '₫': 'VND', '฿': 'THB', '₱': 'PHP', '₴': 'UAH', '₦': 'NGN',
  'zł': 'PLN', 'Kč': 'CZK', 'Ft': 'HUF', 'Fr.': 'CHF', 'R': 'ZAR', 'R$': 'BRL',
  '$': 'USD', 'US$': 'USD', 'C$': 'CAD', 'CA$': 'CAD', 'A$': 'AUD', 'AU$': 'AUD', 'NZ$': 'NZD',
  'HK$': 'HKD', 'S$': 'SGD', 'MX$': 'MXN',
};

/**
 * Signs shared by several currencies, told apart by the locale id Sheets and
 * Excel write after them ("[$$-C09]" is Australian dollars, "[$kr-41D]" Swedish
 * kronor). Hexadecimal Windows LCIDs, upper case.
 * @type {Object<string, Object<string, string>>}
 */
const CURRENCY_BY_LOCALE = {
  '$': { '409': 'USD', '1009': 'CAD', 'C0C': 'CAD', 'C09': 'AUD', '1409': 'NZD', '80A': 'MXN', '4809': 'SGD', 'C04': 'HKD' },
  '¥': { '411': 'JPY', '804': 'CNY' },
  'kr': { '41D': 'SEK', '81D': 'SEK', '414': 'NOK', '814': 'NOK', '406': 'DKK', '40F': 'ISK' },
};

/**
 * The ISO code for a sign or code as written in a format, or ''.
 * @param {string} sign      e.g. "€", "CHF", "$".
 * @param {string} locale    The hexadecimal locale id after "-", or ''.
 * @return {string}
 */
function currencyOfSign_(sign, locale) {
  const s = sign.trim();
  if (!s) return '';
  const byLocale = CURRENCY_BY_LOCALE[s];
  if (byLocale && locale && byLocale[locale.toUpperCase()]) return byLocale[locale.toUpperCase()];
  if (/^[A-Z]{3}$/.test(s)) return s;
  return Object.prototype.hasOwnProperty.call(CURRENCY_SIGNS, s) ? CURRENCY_SIGNS[s] : '';
}

/**
 * The currency a number format shows, or '' when it shows none ("0.00",
 * "#,##0", Sheets' "0.###############" for a cell never formatted).
 * @param {string} format
 * @return {string}
 */
function currencyOfFormat_(format) {
  const section = firstFormatSection_(String(format || ''));
  // [$€], [$€-407], [$CHF] — Sheets' and Excel's currency token.
  const bracket = /\[\$([^\]-]*)(?:-([0-9A-Fa-f]+))?\]/.exec(section);
  if (bracket && bracket[1]) return currencyOfSign_(bracket[1], bracket[2] || '');
  // "€"#,##0.00 — a quoted literal.
  const quoted = /"([^"]+)"/.exec(section);
  if (quoted) {
    const code = currencyOfText_(quoted[1]);
    if (code) return code;
  }
  // £#,##0.00 or \€#,##0.00 — a bare sign outside quotes and brackets.
  const bare = section.replace(/"[^"]*"/g, ' ').replace(/\[[^\]]*\]/g, ' ').replace(/\\/g, '');
  return currencyOfText_(bare.replace(/[#0?.,;%_*()\s-]+/g, ' '));
}

/**
 * The currency a text amount shows ("$2,480.00", "1.250,00 €", "1,234.50 EUR"), or ''.
 * @param {string} text
 * @return {string}
 */
function currencyOfText_(text) {
  const code = /(?:^|[^A-Za-z])([A-Z]{3})(?![A-Za-z])/.exec(text);
  if (code) return code[1];
  // Longest signs first, so "R$" is not read as "R" and "US$" not as "$".
  const signs = Object.keys(CURRENCY_SIGNS).sort((a, b) => b.length - a.length);
  for (const sign of signs) {
    const at = text.indexOf(sign);
    if (at < 0) continue;
    // A letter sign ("R", "Ft", "kr") only counts standing alone, not inside a word.
    if (/^[A-Za-z]/.test(sign) && (/[A-Za-z]/.test(text.charAt(at - 1)) || /[A-Za-z]/.test(text.charAt(at + sign.length)))) continue;
    return CURRENCY_SIGNS[sign];
  }
  return '';
}

/**
 * The first section of a number format (positive numbers), ignoring ";"
 * inside quotes and brackets.
 * @param {string} format
 * @return {string}
 */
function firstFormatSection_(format) {
  let quoted = false;
  let bracket = false;
  for (let i = 0; i < format.length; i++) {
    const ch = format.charAt(i);
    if (ch === '"') quoted = !quoted;
    else if (!quoted && ch === '[') bracket = true;
    else if (!quoted && ch === ']') bracket = false;
    else if (!quoted && !bracket && ch === ';') return format.slice(0, i);
  }
  return format;
}
