#!/usr/bin/env python3
"""Generate a realistic, deterministic Maildir++ mail store (Dovecot style).

Used by mailkeep benchmarks and tests.  The same arguments always produce a
byte-identical tree: same file names, contents and mtimes.  Everything random
comes from random.Random(--seed); all dates are relative to a fixed "now",
2026-11-01T00:00:00Z, and spread over the two years before it.

Layout::

    OUT/<domain>/<localpart>/Maildir/
        cur/ new/ tmp/          INBOX
        dovecot-uidlist         "3 V<uidvalidity> N<nextuid> G<guid>", then
                                "<uid> :<base name without :2,...>" lines
        dovecot-keywords        sometimes: "0 $Forwarded", "1 Junk"
        subscriptions           "V<TAB>2", empty line, then one folder per line,
                                hierarchy levels separated by a TAB
        .Sent/ .Drafts/ .Trash/ .Junk/ .Archive/ .Archive.2024/ .Archive.2025/
                                each with cur/ new/ tmp/, an empty
                                maildirfolder file and its own dovecot-uidlist
                                (INBOX and .Junk sometimes dovecot-keywords)
        .Entw&APw-rfe/ ...      sometimes one extra folder, non-ASCII names
                                in modified UTF-7 (RFC 3501)

Message files are named the way Dovecot names them::

    cur/<time>.M<usec>P<pid>.<host>,S=<size>,W=<vsize>:2,<flags>
    new/<time>.M<usec>P<pid>.<host>,S=<size>,W=<vsize>

S= is the exact file size, W= the size with every LF counted as CRLF.  Flags
are the standard letters (D F R S T, ASCII order) followed by keyword letters
(a = $Forwarded, b = Junk, only where dovecot-keywords exists).  A share of
files (--size-only-share) have old qmail/Courier style names without S= and
W=, so their size is only known from stat().  Every file's mtime, the time in
its name and its Date: header are the same instant.

Messages are RFC 5322 with LF line endings: received mail carries Return-Path,
Delivered-To and Received lines; Sent and Drafts hold what a client would
APPEND (no delivery headers).  Bodies are text/plain, multipart/alternative or
multipart/mixed with a base64 attachment.  A share of messages
(--multi-recipient-share) is delivered to 2-5 mailboxes of one domain: the
copies differ only in the Delivered-To line.

The summary's "bytes" is the sum of the message file sizes (what a quota
counts); "meta_bytes" is the size of the other files (uidlists, keywords,
subscriptions); "vbytes" is the sum of the W= sizes.
"""

import argparse
import base64
import calendar
import itertools
import json
import math
import os
import random
import re
import shutil
import sys
import time

NOW = calendar.timegm((2026, 11, 1, 0, 0, 0))
DAY = 86400
WINDOW_START = NOW - 730 * DAY
YEAR_2025 = calendar.timegm((2025, 1, 1, 0, 0, 0))
YEAR_2026 = calendar.timegm((2026, 1, 1, 0, 0, 0))
NS = 10**9
B64_LINE = 76                       # base64 characters per line (57 bytes)
MAX_MESSAGE = 20 * 1024 * 1024      # upper bound for the rare huge messages
PREAMBLE = b"This is a multi-part message in MIME format.\n"

WORDS = {
    "en": """
        the be to of and a in that have it for not on with he as you do at
        this but his by from they we say her she or an will my one all would
        there their what so up out if about who get which go me when make can
        like time no just him know take people into year your good some could
        them see other than then now look only come its over think also back
        after use two how our work first well way even new want because any
        these give day most us meeting report project invoice order delivery
        budget team customer offer contract question answer weekend office
        schedule review update draft price payment account server backup
        holiday family friday monday tomorrow today please thanks soon quick
        important attached below above next last week month document agenda
        note idea plan result change problem solution support request call
        phone address list number version release feedback deadline travel
        hotel flight ticket dinner lunch coffee morning evening house garden
        """.split(),
    "de": """
        der die das und ist nicht ich du wir ihr sie es ein eine mit auf für
        von zu im den dem des auch noch schon wie was wenn aber oder dann so
        nur sehr mehr hier da bei nach über vor aus bis durch unter gegen
        ohne um heute morgen gestern bitte danke gern gerne leider natürlich
        vielleicht wirklich eigentlich gleich später bald immer nie oft
        Termin Rechnung Angebot Auftrag Lieferung Vertrag Frage Antwort
        Woche Monat Jahr Tag Abend Wochenende Büro Kunde Kollegen Team
        Projekt Bericht Besprechung Unterlagen Anhang Zahlung Konto Preis
        Urlaub Familie Haus Garten Auto Bahn Reise Hotel Flug Essen Kaffee
        Montag Freitag Problem Lösung Vorschlag Änderung Entwurf Version
        Ergebnis Idee Plan Nachricht Telefon Adresse Liste Nummer Größe
        haben sein werden können müssen sollen wollen machen sagen gehen
        kommen sehen geben nehmen finden schreiben schicken prüfen klären
        besprechen erledigen melden freuen brauchen wissen denken arbeiten
        neue alte gute große kleine schnell kurz lang wichtig fertig offen
        klar richtig möglich nächste letzte erste zweite ganze beiden
        """.split(),
}

GREETINGS = {"en": ("Hi {}", "Hello {}", "Dear {}", "Good morning {}"),
             "de": ("Hallo {}", "Liebe(r) {}", "Guten Morgen {}",
                    "Sehr geehrte(r) {}", "Moin {}")}
CLOSINGS = {"en": ("Best regards", "Cheers", "Thanks", "Kind regards"),
            "de": ("Viele Grüße", "Beste Grüße", "Mit freundlichen Grüßen",
                   "Danke und Gruß", "LG")}
QUOTE_INTRO = {"en": "On {date}, {name} wrote:", "de": "Am {date} schrieb {name}:"}
REPLY_PREFIX = {"en": ("Re: ", "Fwd: "), "de": ("AW: ", "WG: ", "Re: ")}

FIRST_NAMES = """
    otto anna lukas marie jonas sophie felix laura paul lea max emma leon mia
    tim hannah jan lena tom julia finn sarah nico katharina david johanna
    michael sabine thomas petra andreas claudia stefan monika martin susanne
    frank birgit peter heike klaus ute jürgen jörg björn sören günter
    maria elena ahmet ayse ivan olga pierre claire marco giulia james emily
    """.split()
LAST_NAMES = """
    friedrich müller schmidt schneider fischer weber meyer wagner becker
    schulz hoffmann schäfer koch bauer richter klein wolf schröder neumann
    schwarz zimmermann braun krüger hofmann hartmann lange schmitt werner
    krause meier lehmann köhler maier herrmann könig walter mayer huber
    kaiser fuchs peters lang scholz möller weiß jung hahn vogel keller
    berger roth frank beck lorenz baumann franke albrecht winter
    """.split()
ROLE_ACCOUNTS = ("info", "kontakt", "office", "buchhaltung", "rechnung",
                 "support", "bewerbung", "post", "service", "verwaltung")
DOMAIN_STEMS = """
    hosteurope nordlicht alpenblick sonnenhof seeblick bergwerk lindenhof
    rheinblick waldrand elbufer mainufer hafenkante kiezkultur feldweg
    morgenrot abendstern blauwal grünspan eichenhain kastanie
    """.split()
TRADES = """
    bau elektro praxis kanzlei autohaus immobilien steuerberatung druckerei
    reisen gartenbau tischlerei fotostudio zahnarzt physio architekten
    """.split()
CITIES = """
    berlin koeln hamburg muenchen leipzig dresden bremen kassel ulm jena
    mainz bonn kiel trier passau
    """.split()
TLDS = ("de",) * 12 + ("com", "com", "net", "org", "eu", "at", "ch", "info")
PROVIDERS = {
    "gmx.de": "mout.gmx.net", "web.de": "mout.web.de",
    "gmail.com": "mail-wr1-f{n}.google.com", "t-online.de": "mailout{n}.t-online.de",
    "outlook.com": "mail-db8eur05olkn20{n}.outbound.protection.outlook.com",
    "posteo.de": "mout0{n}.posteo.de", "mailbox.org": "mout-p-10{n}.mailbox.org",
    "icloud.com": "qs51p00im-qukt01071{n}.me.com",
    "yahoo.de": "sonic30{n}-21.consmr.mail.ir2.yahoo.com",
    "freenet.de": "mout{n}.freenet.de",
}
PROVIDER_DOMAINS = tuple(PROVIDERS)
SPAM_TLDS = ("xyz", "top", "info", "click", "shop", "biz")
SPAM_SUBJECTS = ("Your account will be suspended", "You have won!",
                 "Ihr Paket konnte nicht zugestellt werden", "Rechnung offen",
                 "Exclusive offer just for you", "Bestätigen Sie Ihr Konto")
USER_AGENTS = (
    "User-Agent: Mozilla Thunderbird",
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Thunderbird/128.4.0",
    "X-Mailer: Microsoft Outlook 16.0",
    "X-Mailer: Apple Mail (2.3776.700.51)",
    "User-Agent: Roundcube Webmail/1.6.9",
    "User-Agent: K-9 Mail for Android",
)
ATTACHMENTS = (   # content type, extension, magic bytes, file name stems
    ("application/pdf", "pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n",
     ("Rechnung", "Angebot", "Vertrag", "invoice", "report", "Protokoll", "Scan")),
    ("image/jpeg", "jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00H\x00H\x00\x00",
     ("IMG", "DSC", "Foto", "photo")),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx",
     b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00",
     ("Entwurf", "Bericht", "notes", "Lebenslauf")),
)
CUSTOM_FOLDERS = ("Entwürfe", "Gelöschte Elemente", "Büro", "Übersicht",
                  "Privat & Familie", "Rechnungen", "Projekte")
STANDARD_FOLDERS = (("Sent",), ("Drafts",), ("Trash",), ("Junk",),
                    ("Archive",), ("Archive", "2024"), ("Archive", "2025"))
FOLDER_WEIGHTS = {(): 50, ("Sent",): 16, ("Drafts",): 1, ("Trash",): 6,
                  ("Junk",): 4, ("Archive",): 8, ("Archive", "2024"): 4,
                  ("Archive", "2025"): 8}
CUSTOM_FOLDER_WEIGHT = 3
OUTGOING = (("Sent",), ("Drafts",))
KEYWORDS_FILE = b"0 $Forwarded\n1 Junk\n"
DOVECOT_HOSTS = ("imap1", "imap2", "mail-be01", "mail-be02", "dovecot3")
LEGACY_HOSTS = ("oldmail", "courier1", "mx0")
TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


# ---------------------------------------------------------------- helpers

def mutf7(name):
    """Encode a folder name in IMAP modified UTF-7 (RFC 3501, 5.1.3)."""
    out = []
    for run in re.split(r"([^\x20-\x7e]+)", name):
        if run and not ("\x20" <= run[0] <= "\x7e"):
            b64 = base64.b64encode(run.encode("utf-16-be")).rstrip(b"=")
            out.append("&" + b64.decode("ascii").replace("/", ",") + "-")
        else:
            out.append(run.replace("&", "&-"))
    return "".join(out)


def _last_sunday(year, month):
    """00:00 UTC of the last Sunday of month (March or October)."""
    last_day = calendar.timegm((year, month + 1, 1, 0, 0, 0)) - DAY
    return last_day - (time.gmtime(last_day).tm_wday + 1) % 7 * DAY


_DST = {}


def berlin_offset(ts):
    """UTC offset of Europe/Berlin at ts in seconds (EU summer time rule)."""
    year = time.gmtime(ts).tm_year
    if year not in _DST:
        _DST[year] = (_last_sunday(year, 3) + 3600, _last_sunday(year, 10) + 3600)
    start, end = _DST[year]
    return 7200 if start <= ts < end else 3600


def rfc5322_date(ts, offset):
    tm = time.gmtime(ts + offset)
    minutes = abs(offset) // 60
    return "%s, %d %s %d %02d:%02d:%02d %s%02d%02d" % (
        DAYS[tm.tm_wday], tm.tm_mday, MONTHS[tm.tm_mon - 1], tm.tm_year,
        tm.tm_hour, tm.tm_min, tm.tm_sec, "-" if offset < 0 else "+",
        minutes // 60, minutes % 60)


def encode_word(text):
    """Header text as RFC 2047 encoded words (at most 75 characters each,
    folded) when it is not ASCII, else unchanged."""
    if text.isascii():
        return text
    chunks, chunk = [], ""
    for word in text.split(" "):
        if chunk and len((chunk + word).encode()) > 40:
            chunks.append(chunk)
            chunk = ""
        chunk += word + " "
    chunks.append(chunk[:-1])
    return "\n ".join("=?UTF-8?B?" + base64.b64encode(c.encode()).decode("ascii") + "?="
                      for c in chunks)


def address_header(name, addr):
    return "%s <%s>" % (encode_word(name), addr)


def b64_lines(raw):
    """Base64 with 76-character LF-terminated lines, without a Python loop
    over the lines: strided slice copies place 76 characters per 77 bytes."""
    enc = base64.b64encode(raw)
    full = len(enc) // B64_LINE
    out = bytearray(full * (B64_LINE + 1))
    for col in range(B64_LINE):
        out[col::B64_LINE + 1] = enc[col:full * B64_LINE:B64_LINE]
    out[B64_LINE::B64_LINE + 1] = b"\n" * full
    tail = enc[full * B64_LINE:]
    if tail:
        out += tail + b"\n"
    return bytes(out)


def wrap(words, width=72):
    lines, line, length = [], [], 0
    for word in words:
        if line and length + 1 + len(word) > width:
            lines.append(" ".join(line))
            line, length = [], -1
        line.append(word)
        length += 1 + len(word)
    lines.append(" ".join(line))
    return lines


def person_name(first, last):
    return first.capitalize() + " " + last.capitalize()


def ascii_part(text):
    return text.translate(TRANSLIT)


# ---------------------------------------------------------------- text pool

class TextPool:
    """Paragraphs built once from the seeded RNG; bodies pick from them."""

    PARAGRAPHS_PER_LANGUAGE = 1500

    def __init__(self, rng):
        self.paragraphs = {
            lang: [self._paragraph(rng, words)
                   for _ in range(self.PARAGRAPHS_PER_LANGUAGE)]
            for lang, words in WORDS.items()}

    @staticmethod
    def _paragraph(rng, words):
        """(plain, html, quoted) bytes of one wrapped paragraph."""
        sentence_words = []
        for _ in range(rng.randint(1, 6)):
            sentence = rng.choices(words, k=rng.randint(4, 18))
            sentence[0] = sentence[0].capitalize()
            if len(sentence) > 8 and rng.random() < 0.4:
                sentence[len(sentence) // 2] += ","
            sentence[-1] += rng.choice("....?!")
            sentence_words.extend(sentence)
        lines = wrap(sentence_words)
        plain = "\n".join(lines)
        return (plain.encode(), ("<p>" + plain + "</p>").encode(),
                "\n".join("> " + line for line in lines).encode())

    def pick(self, rng, lang, target):
        """Paragraphs of one language adding up to about target bytes."""
        pool = self.paragraphs[lang]
        chosen, size = [], 0
        while size < target:
            para = pool[rng.randrange(len(pool))]
            chosen.append(para)
            size += len(para[0]) + 2
        return chosen


# ---------------------------------------------------------------- mailboxes

class Folder:
    """One Maildir++ folder; entries are (mtime, base name) of its messages."""

    __slots__ = ("parts", "path", "created", "keywords", "entries")

    def __init__(self, parts, path, created, keywords):
        self.parts, self.path, self.created = parts, path, created
        self.keywords = keywords
        self.entries = []


class Mailbox:
    """A planned mailbox; its directories are created with its first message
    (or at the end of its domain), so --max-bytes leaves no empty ones."""

    __slots__ = ("address", "name", "home", "root", "created", "folders",
                 "folder_keys", "folder_cum_weights", "names", "bytes", "messages",
                 "exists")

    def __init__(self, address, name, home, created, folders, keywords):
        self.address, self.name, self.created = address, name, created
        self.home = home
        self.root = os.path.join(home, "Maildir")
        self.folders = {}
        for i, parts in enumerate(folders):
            path = self.root
            if parts:
                path = os.path.join(self.root, "." + ".".join(mutf7(p) for p in parts))
            self.folders[parts] = Folder(parts, path, created + i,
                                         keywords and parts in ((), ("Junk",)))
        self.folder_keys = tuple(folders)
        self.folder_cum_weights = list(itertools.accumulate(
            FOLDER_WEIGHTS.get(p, CUSTOM_FOLDER_WEIGHT) for p in folders))
        self.names = set()
        self.bytes = self.messages = 0
        self.exists = False

    def create(self):
        """Create the Maildir++ directories and maildirfolder files."""
        os.makedirs(os.path.dirname(self.home), 0o700, exist_ok=True)
        os.mkdir(self.home, 0o700)
        os.mkdir(self.root, 0o700)
        for folder in self.folders.values():
            if folder.parts:
                os.mkdir(folder.path, 0o700)
                write_file(os.path.join(folder.path, "maildirfolder"), b"", folder.created)
            for sub in ("cur", "new", "tmp"):
                os.mkdir(os.path.join(folder.path, sub), 0o700)
        self.exists = True


def set_mtime(path, ts):
    os.utime(path, ns=(ts * NS, ts * NS))


def write_file(path, data, mtime):
    """Create path with one write call and set its mtime."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        if os.write(fd, data) != len(data):
            raise OSError("short write to %s" % path)
        os.utime(fd, ns=(mtime * NS, mtime * NS))
    finally:
        os.close(fd)


class Corpus:
    """Writes domains, mailboxes and messages; keeps the totals."""

    def __init__(self, args, rng):
        self.args, self.rng = args, rng
        self.text = TextPool(rng)
        self.mailboxes = []
        self.messages = self.bytes = self.vbytes = self.meta_bytes = 0

    @property
    def full(self):
        return self.args.max_bytes is not None and self.bytes >= self.args.max_bytes

    # ------------------------------------------------------------ names

    def _unique(self, used, make, number):
        """make() until unused; after 20 collisions number(name, n)."""
        name, n = make(), 1
        while name in used:
            n += 1
            name = make() if n < 20 else number(name, n)
        used.add(name)
        return name

    def _domain_name(self):
        rng = self.rng
        tld = rng.choice(TLDS)
        pattern = rng.randrange(4)
        if pattern == 0:
            base = rng.choice(DOMAIN_STEMS)
        elif pattern == 1:
            base = rng.choice(TRADES) + "-" + rng.choice(LAST_NAMES)
        elif pattern == 2:
            base = rng.choice(TRADES) + "-" + rng.choice(CITIES)
        else:
            base = rng.choice(DOMAIN_STEMS) + "-" + rng.choice(CITIES)
        return ascii_part(base) + "." + tld

    def make_domains(self, count):
        used = set()
        return [self._unique(used, self._domain_name,
                             lambda d, n: d.replace(".", "%d." % n, 1))
                for _ in range(count)]

    def _localpart(self, first, last):
        rng = self.rng
        first, last = ascii_part(first), ascii_part(last)
        style = rng.random()
        if style < 0.6:
            return first + "." + last
        if style < 0.75:
            return first[0] + "." + last
        if style < 0.85:
            return first
        if style < 0.9:
            return last
        return rng.choice(ROLE_ACCOUNTS)

    def _external_person(self):
        """(display name, address) of someone outside the hosted domains."""
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        if rng.random() < 0.7:
            domain = rng.choice(PROVIDER_DOMAINS)
        else:
            domain = self._domain_name()
        local = ascii_part(first) + rng.choice((".", "_", "")) + ascii_part(last)
        if rng.random() < 0.3:
            local += str(rng.randint(1, 99))
        return person_name(first, last), local + "@" + domain

    def _spammer(self):
        rng = self.rng
        words = WORDS["en"]
        domain = "%s-%s%d.%s" % (rng.choice(words), rng.choice(words),
                                 rng.randint(1, 999), rng.choice(SPAM_TLDS))
        name = rng.choice(("Support", "Service Team", "Kundenservice", "Winner Notification"))
        return name, "no-reply@" + domain

    # ------------------------------------------------------------ layout

    def new_mailbox(self, domain, used_localparts):
        rng = self.rng
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = self._unique(used_localparts, lambda: self._localpart(first, last),
                             lambda l, n: "%s%d" % (l, n))
        created = WINDOW_START - rng.randrange(3 * 365 * DAY)
        folders = [()] + list(STANDARD_FOLDERS)
        if rng.random() < 0.15:
            folders.append((rng.choice(CUSTOM_FOLDERS),))
        mbox = Mailbox(local + "@" + domain, person_name(first, last),
                       os.path.join(self.args.out, domain, local), created,
                       folders, rng.random() < 0.2)
        self.mailboxes.append(mbox)
        return mbox

    def mailbox_counts(self, n_domains):
        """Mailboxes per domain: at least one each, the rest Zipf-like."""
        counts = [1] * n_domains
        weights = [1.0 / (i + 1) ** 0.8 for i in range(n_domains)]
        for i in self.rng.choices(range(n_domains), weights,
                                  k=self.args.mailboxes - n_domains):
            counts[i] += 1
        return counts

    # ------------------------------------------------------------ run

    def run(self):
        args = self.args
        domains = self.make_domains(args.domains)
        newest = 0
        for domain, count in zip(domains, self.mailbox_counts(args.domains)):
            newest = max(newest, self._domain(domain, count))
            if self.full:
                break
        set_mtime(args.out, newest)

    def _domain(self, domain, count):
        """Create count mailboxes with their messages; return the newest
        mtime in the domain."""
        args, rng = self.args, self.rng
        used = set()
        boxes = [self.new_mailbox(domain, used) for _ in range(count)]
        # Copies of multi-recipient messages add to the recipients' counts;
        # lower the own mean so the overall mean stays --messages-per-mailbox.
        extra = 0.0
        if count > 1:
            extra = sum(min(k, count) - 1 for k in range(2, 6)) / 4
        own_mean = args.messages_per_mailbox / (1 + args.multi_recipient_share * extra)
        for mbox in boxes:
            n = int(own_mean * min(rng.lognormvariate(-0.5, 1.0), 30) + rng.random())
            new_inbox, new_junk = rng.randint(0, 4), rng.randint(0, 2)
            for i in range(n):
                if self.full:
                    break
                if i < new_inbox:
                    self._message(mbox, boxes, (), True)
                elif i < new_inbox + new_junk:
                    self._message(mbox, boxes, ("Junk",), True)
                else:
                    self._message(mbox, boxes, None, False)
            if self.full:
                break
        if not self.full:
            for mbox in boxes:
                if not mbox.exists:
                    mbox.create()
        newest = max(self._finish_mailbox(mbox) for mbox in boxes if mbox.exists)
        set_mtime(os.path.join(args.out, domain), newest)
        return newest

    # ------------------------------------------------------------ messages

    def _mtime(self, parts, recent):
        rng = self.rng
        u = rng.random()
        if recent:
            return NOW - 1 - int(3 * DAY * u)
        if parts == ():
            return NOW - 1 - int((NOW - WINDOW_START - 1) * u * u)
        if parts in (("Trash",), ("Junk",)):
            return NOW - 1 - int(60 * DAY * u)
        if parts == ("Archive", "2024"):
            return WINDOW_START + int((YEAR_2025 - WINDOW_START) * u)
        if parts == ("Archive", "2025"):
            return YEAR_2025 + int((YEAR_2026 - YEAR_2025) * u)
        return WINDOW_START + int((NOW - WINDOW_START) * u)

    def _message(self, mbox, peers, parts, recent):
        """Generate one message for mbox (possibly also for some peers)."""
        rng, args = self.rng, self.args
        recipients = [mbox]
        if parts is None:
            if len(peers) > 1 and rng.random() < args.multi_recipient_share:
                parts = ()
                others = [p for p in peers if p is not mbox]
                k = min(rng.randint(2, 5), len(peers))
                recipients += rng.sample(others, k - 1)
            else:
                parts = rng.choices(mbox.folder_keys,
                                    cum_weights=mbox.folder_cum_weights)[0]
        mtime = self._mtime(parts, recent)
        if parts in OUTGOING:
            data = self._outgoing(mbox, parts, mtime)
            self._store(mbox, parts, mtime, data, recent)
            return
        prefix, rest = self._incoming(mbox, recipients, parts == ("Junk",), mtime)
        for rcpt in recipients:
            data = b"".join((prefix, b"Delivered-To: ", rcpt.address.encode(), b"\n", rest))
            self._store(rcpt, parts, mtime, data, recent)

    def _body(self, lang, greet, signer, signer_org, mtime, reply_to):
        """(plain, html) bytes of a body text with greeting and signature."""
        rng = self.rng
        target = min(int(rng.lognormvariate(math.log(2500), 0.9)), 150_000)
        paras = self.text.pick(rng, lang, target)
        greeting = rng.choice(GREETINGS[lang]).format(greet) + ","
        closing = rng.choice(CLOSINGS[lang])
        signature = "%s\n%s\n\n-- \n%s\n%s\nTel. +49 %d %d" % (
            closing, signer.split()[0], signer, signer_org,
            rng.randint(30, 9999), rng.randint(100000, 9999999))
        plain = [greeting.encode(), b"\n\n", b"\n\n".join(p[0] for p in paras),
                 b"\n\n", signature.encode(), b"\n"]
        html = [b'<!DOCTYPE html>\n<html>\n<head>\n<meta http-equiv="Content-Type" '
                b'content="text/html; charset=UTF-8">\n</head>\n<body>\n<p>',
                greeting.encode(), b"</p>\n", b"\n".join(p[1] for p in paras), b"\n<p>",
                signature.replace("\n", "<br>\n").encode(), b"</p>\n"]
        if reply_to:
            quoted = self.text.pick(rng, lang, rng.randint(200, 4000))
            quoted_time = mtime - rng.randint(600, 20 * DAY)
            intro = QUOTE_INTRO[lang].format(
                date=rfc5322_date(quoted_time, berlin_offset(quoted_time)), name=reply_to)
            plain += [b"\n", intro.encode(), b"\n", b"\n>\n".join(p[2] for p in quoted), b"\n"]
            html += [b"<blockquote>\n", b"\n".join(p[1] for p in quoted), b"\n</blockquote>\n"]
        html.append(b"</body>\n</html>\n")
        return b"".join(plain), b"".join(html)

    def _mime(self, headers, plain, html, with_attachment, mtime):
        """Header lines (list of str) plus MIME body, as bytes: text/plain
        or multipart/alternative, wrapped in multipart/mixed with a base64
        attachment if with_attachment."""
        rng = self.rng
        cte = "7bit" if plain.isascii() and html.isascii() else "8bit"
        text_type = ("Content-Type: text/plain; charset=UTF-8; format=flowed\n"
                     "Content-Transfer-Encoding: " + cte)
        if rng.random() < 0.5:
            content_type, content = text_type, [plain]
        else:
            alt = "------------%024x" % rng.getrandbits(96)
            content_type = 'Content-Type: multipart/alternative;\n boundary="%s"' % alt
            content = [("--%s\n%s\n\n" % (alt, text_type)).encode(), plain,
                       ("\n--%s\nContent-Type: text/html; charset=UTF-8\n"
                        "Content-Transfer-Encoding: %s\n\n" % (alt, cte)).encode(),
                       html, ("\n--%s--\n" % alt).encode()]
        headers.append("MIME-Version: 1.0")
        if not with_attachment:
            headers.append(content_type)
            if len(content) > 1:
                content.insert(0, PREAMBLE)
            return b"".join([("\n".join(headers)).encode(), b"\n\n"] + content)
        mixed = "------------%024x" % rng.getrandbits(96)
        headers.append('Content-Type: multipart/mixed;\n boundary="%s"' % mixed)
        ctype, ext, magic, stems = rng.choice(ATTACHMENTS)
        if rng.random() < 0.02:
            encoded = rng.randint(5 << 20, MAX_MESSAGE - (1 << 20))
        else:
            encoded = int(math.exp(rng.uniform(math.log(100 << 10), math.log(5 << 20))))
        raw = magic + rng.randbytes(encoded * 57 // 77 - len(magic))
        filename = "%s_%s.%s" % (rng.choice(stems),
                                 time.strftime("%Y%m%d", time.gmtime(mtime)), ext)
        return b"".join([
            ("\n".join(headers)).encode(), b"\n\n", PREAMBLE,
            ("--%s\n%s\n\n" % (mixed, content_type)).encode(), *content,
            ('\n--%s\nContent-Type: %s; name="%s"\n'
             'Content-Disposition: attachment; filename="%s"\n'
             "Content-Transfer-Encoding: base64\n\n"
             % (mixed, ctype, filename, filename)).encode(),
            b64_lines(raw),
            ("\n--%s--\n" % mixed).encode()])

    def _common_headers(self, sender, to, cc, subject, mtime, sender_domain, reply):
        rng = self.rng
        offset = berlin_offset(mtime) if rng.random() < 0.8 else 0
        headers = ["Message-ID: <%016x.%08x@%s>" % (rng.getrandbits(64), rng.getrandbits(32),
                                                   sender_domain),
                   "Date: " + rfc5322_date(mtime, offset),
                   "From: " + address_header(*sender),
                   "To: " + ",\n ".join(address_header(*p) for p in to)]
        if cc:
            headers.append("Cc: " + ",\n ".join(address_header(*p) for p in cc))
        headers.append("Subject: " + encode_word(subject))
        if reply:
            ref = "<%016x@%s>" % (rng.getrandbits(64), to[0][1].split("@")[1])
            headers += ["In-Reply-To: " + ref, "References: " + ref]
        if rng.random() < 0.7:
            headers.append(rng.choice(USER_AGENTS))
        return headers

    def _subject(self, lang, reply):
        rng = self.rng
        words = rng.choices(WORDS[lang], k=rng.randint(2, 7))
        subject = " ".join(words)
        subject = subject[0].upper() + subject[1:]
        if reply:
            subject = rng.choice(REPLY_PREFIX[lang]) + subject
        return subject

    def _outgoing(self, mbox, parts, mtime):
        """A message as a client APPENDs it to Sent or Drafts."""
        rng = self.rng
        lang = rng.choice(("de", "de", "en"))
        to = [self._external_person() for _ in range(rng.choice((1, 1, 1, 2, 3)))]
        reply = rng.random() < 0.35
        subject = self._subject(lang, reply)
        headers = self._common_headers((mbox.name, mbox.address), to, [], subject, mtime,
                                       mbox.address.split("@")[1], reply)
        plain, html = self._body(lang, to[0][0].split()[0], mbox.name,
                                 mbox.address.split("@")[1], mtime,
                                 to[0][0] if reply else None)
        with_attachment = parts == ("Sent",) and rng.random() < self.args.attachment_share
        return self._mime(headers, plain, html, with_attachment, mtime)

    def _incoming(self, mbox, recipients, spam, mtime):
        """(Return-Path line, rest after Delivered-To) of a received message."""
        rng = self.rng
        domain = mbox.address.split("@")[1]
        lang = rng.choice(("de", "de", "en"))
        if spam:
            sender = self._spammer()
            subject = rng.choice(SPAM_SUBJECTS)
            reply = False
        else:
            if rng.random() < 0.1 and len(self.mailboxes) > 1:
                other = rng.choice(self.mailboxes)
                sender = (other.name, other.address)
            else:
                sender = self._external_person()
            reply = rng.random() < 0.3
            subject = self._subject(lang, reply)
        sender_domain = sender[1].split("@")[1]
        to = [(r.name, r.address) for r in recipients]
        cc = [self._external_person()] if rng.random() < 0.1 else []
        stamp = rfc5322_date(mtime, berlin_offset(mtime))
        zone = "CEST" if berlin_offset(mtime) == 7200 else "CET"
        mx = "mx%d.%s" % (rng.randint(1, 2), domain)
        for_rcpt = "\n\tfor <%s>" % mbox.address if len(recipients) == 1 else ""
        mta = PROVIDERS.get(sender_domain, "mail.{n}." + sender_domain).format(n=rng.randint(1, 9))
        ip = "%d.%d.%d.%d" % (rng.randint(5, 223), rng.randint(0, 255),
                              rng.randint(0, 255), rng.randint(1, 254))
        trace = [
            "Received: from %s\n\tby %s.%s with LMTP\n\tid %s\n\t(envelope-from <%s>)%s; %s"
            % (mx, rng.choice(DOVECOT_HOSTS), domain,
               base64.b64encode(rng.randbytes(16)).decode("ascii")[:22],
               sender[1], for_rcpt, stamp),
            "Received: from %s (%s [%s])\n\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 "
            "(256/256 bits)\n\t key-exchange X25519 server-signature RSA-PSS (2048 bits) "
            "server-digest SHA256)\n\t(No client certificate requested)\n\tby %s (Postfix) "
            "with ESMTPS id 4%s%s; %s (%s)"
            % (mta, mta, ip, mx, "%010X" % rng.getrandbits(40), for_rcpt, stamp, zone)]
        if rng.random() < (0.4 if spam else 0.7):
            signature = base64.b64encode(rng.randbytes(256)).decode("ascii")
            trace.append(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s;\n\ts=%s; t=%d;\n"
                "\tbh=%s;\n\th=From:To:Subject:Date:Message-ID:MIME-Version:Content-Type;\n\tb=%s"
                % (sender_domain, rng.choice(("s1", "dkim", "selector1", "mail", "2024")), mtime,
                   base64.b64encode(rng.randbytes(32)).decode("ascii"),
                   "\n\t ".join(signature[i:i + 70] for i in range(0, len(signature), 70))))
        if spam:
            trace += ["X-Spam-Flag: YES",
                      "X-Spam-Status: Yes, score=%.1f required=5.0" % rng.uniform(5.1, 30)]
        headers = trace + self._common_headers(sender, to, cc, subject, mtime,
                                               sender_domain, reply)
        greet = to[0][0].split()[0] if len(to) == 1 else rng.choice(("zusammen", "all", "Team"))
        plain, html = self._body(lang, greet, sender[0], sender_domain, mtime,
                                 mbox.name if reply else None)
        rest = self._mime(headers, plain, html,
                          not spam and rng.random() < self.args.attachment_share, mtime)
        return ("Return-Path: <%s>\n" % sender[1]).encode(), rest

    # ------------------------------------------------------------ storing

    def _flags(self, folder):
        rng = self.rng
        parts, u = folder.parts, rng.random()
        if parts == ("Drafts",):
            flags = "DS" if u < 0.7 else "D"
        elif parts == ("Sent",):
            flags = "S" if u < 0.95 else ""
        elif parts == ("Trash",):
            flags = "S" if u < 0.6 else ("ST" if u < 0.9 else "")
        elif parts == ("Junk",):
            flags = "S" if u < 0.5 else ""
        elif parts == ():
            flags = ("S" if u < 0.7 else "RS" if u < 0.8 else "FS" if u < 0.84
                     else "FRS" if u < 0.85 else "")
        else:
            flags = "S" if u < 0.95 else "RS"
        if folder.keywords:
            if parts == ("Junk",):
                flags += "b"
            elif parts == () and flags and rng.random() < 0.1:
                flags += "a"
        return flags

    def _basename(self, mbox, mtime, size, vsize, legacy):
        """Unique (within mbox) base name without the :2, part."""
        rng = self.rng
        while True:
            if legacy:
                if rng.random() < 0.5:
                    name = "%d.%d_%d.%s" % (mtime, rng.randint(300, 32767),
                                            rng.randint(0, 9), rng.choice(LEGACY_HOSTS))
                else:
                    name = "%d.M%dP%dV%016XI%08X.%s" % (
                        mtime, rng.randrange(10**6), rng.randint(300, 32767),
                        rng.getrandbits(16), rng.getrandbits(32), rng.choice(LEGACY_HOSTS))
            else:
                name = "%d.M%dP%d.%s,S=%d,W=%d" % (
                    mtime, rng.randrange(10**6), rng.randint(1000, 99999),
                    rng.choice(DOVECOT_HOSTS), size, vsize)
            if name not in mbox.names:
                mbox.names.add(name)
                return name

    def _store(self, mbox, parts, mtime, data, recent):
        if not mbox.exists:
            mbox.create()
        folder = mbox.folders[parts]
        size = len(data)
        vsize = size + data.count(b"\n")
        legacy = self.rng.random() < self.args.size_only_share
        base = self._basename(mbox, mtime, size, vsize, legacy)
        if recent:
            path = os.path.join(folder.path, "new", base)
        else:
            path = os.path.join(folder.path, "cur", base + ":2," + self._flags(folder))
        write_file(path, data, mtime)
        folder.entries.append((mtime, base))
        mbox.bytes += size
        mbox.messages += 1
        self.bytes += size
        self.vbytes += vsize
        self.messages += 1

    def _meta(self, path, data, mtime):
        write_file(path, data, mtime)
        self.meta_bytes += len(data)

    def _finish_mailbox(self, mbox):
        """Write uidlists, keywords and subscriptions, settle directory
        mtimes; return the newest mtime in the mailbox."""
        rng = self.rng
        for folder in mbox.folders.values():
            folder.entries.sort()
            uid, lines = 0, []
            for _, base in folder.entries:
                uid += 1 if rng.random() < 0.9 else rng.randint(2, 20)
                lines.append("%d :%s\n" % (uid, base))
            newest = folder.entries[-1][0] if folder.entries else folder.created
            header = "3 V%d N%d G%032x\n" % (folder.created, uid + 1, rng.getrandbits(128))
            self._meta(os.path.join(folder.path, "dovecot-uidlist"),
                       (header + "".join(lines)).encode(), newest)
            if folder.keywords:
                self._meta(os.path.join(folder.path, "dovecot-keywords"),
                           KEYWORDS_FILE, folder.created)
        subscriptions = "V\t2\n\n" + "".join(
            "\t".join(mutf7(p) for p in parts) + "\n" for parts in mbox.folder_keys if parts)
        self._meta(os.path.join(mbox.root, "subscriptions"), subscriptions.encode(),
                   mbox.created)
        newest = set_dir_times(mbox.root, mbox.created)
        set_mtime(mbox.home, newest)
        return newest


def set_dir_times(path, empty):
    """Set the mtime of path and every directory below it to the newest
    mtime found inside (empty for empty directories) and return it, so
    directory mtimes are as reproducible as file mtimes."""
    newest = empty
    with os.scandir(path) as it:
        for entry in it:
            if entry.is_dir(follow_symlinks=False):
                mtime = set_dir_times(entry.path, empty)
            else:
                mtime = entry.stat(follow_symlinks=False).st_mtime_ns // NS
            newest = max(newest, mtime)
    set_mtime(path, newest)
    return newest


# ---------------------------------------------------------------- command line

def byte_count(text):
    """argparse type: a byte count, optionally with a K, M, G or T suffix."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError("not a positive byte count: %r" % text)
    return int(match.group(1)) << 10 * " KMGT".index(match.group(2).upper() or " ")


def share(text):
    """argparse type: a fraction between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("not a share between 0 and 1: %r" % text)
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="Generate a deterministic, realistic Maildir++ mail store "
                    "(DIR/<domain>/<localpart>/Maildir) for benchmarks and tests.")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output directory; must be missing or empty")
    parser.add_argument("--mailboxes", required=True, type=int, metavar="N",
                        help="number of mailboxes")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="random seed (default: %(default)s)")
    parser.add_argument("--domains", type=int, metavar="D",
                        help="number of domains (default: max(1, N/50))")
    parser.add_argument("--messages-per-mailbox", type=float, default=100.0, metavar="M",
                        help="mean messages per mailbox, long-tailed (default: %(default)g)")
    parser.add_argument("--attachment-share", type=share, default=0.04, metavar="F",
                        help="share of messages with a 100 KiB-5 MiB attachment, "
                             "rarely up to 20 MiB (default: %(default)g)")
    parser.add_argument("--size-only-share", type=share, default=0.1, metavar="F",
                        help="share of message files named without S= and W= "
                             "(size only via stat) (default: %(default)g)")
    parser.add_argument("--multi-recipient-share", type=share, default=0.05, metavar="F",
                        help="share of messages delivered to 2-5 mailboxes of the "
                             "same domain (default: %(default)g)")
    parser.add_argument("--max-bytes", type=byte_count, metavar="BYTES",
                        help="stop once the message bytes reach BYTES (K/M/G/T suffixes)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON summary to stdout")
    parser.add_argument("--per-mailbox", action="store_true",
                        help="with --json: add bytes and messages per mailbox address")
    parser.add_argument("--force", action="store_true",
                        help="delete the contents of a non-empty --out first")
    args = parser.parse_args(argv)
    if args.mailboxes < 1:
        parser.error("--mailboxes must be at least 1")
    if args.domains is None:
        args.domains = max(1, args.mailboxes // 50)
    if not 1 <= args.domains <= args.mailboxes:
        parser.error("--domains must be between 1 and --mailboxes")
    if not 0 <= args.messages_per_mailbox <= 1e6:
        parser.error("--messages-per-mailbox must be between 0 and 1000000")
    if args.per_mailbox and not args.json:
        parser.error("--per-mailbox needs --json")
    return args


def prepare_out(out, force):
    """Make sure out is an empty directory; exit 1 if it can't be."""
    if os.path.lexists(out):
        if not os.path.isdir(out):
            sys.exit("gen-corpus.py: error: %s exists and is not a directory" % out)
        entries = list(os.scandir(out))
        if entries and not force:
            sys.exit("gen-corpus.py: error: %s is not empty (use --force to "
                     "delete its contents)" % out)
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
    else:
        os.makedirs(out)


def main(argv=None):
    args = parse_args(argv)
    prepare_out(args.out, args.force)
    started = time.monotonic()
    corpus = Corpus(args, random.Random(args.seed))
    corpus.run()
    seconds = time.monotonic() - started
    mailboxes = [m for m in corpus.mailboxes if m.exists]
    mib = corpus.bytes / 2**20
    print("gen-corpus: %d mailboxes, %d messages, %d bytes (%.1f MiB) in %.1f s, %.1f MiB/s"
          % (len(mailboxes), corpus.messages, corpus.bytes, mib, seconds,
             mib / seconds if seconds else 0.0), file=sys.stderr)
    if args.json:
        summary = {"mailboxes": len(mailboxes), "messages": corpus.messages,
                   "bytes": corpus.bytes, "vbytes": corpus.vbytes,
                   "meta_bytes": corpus.meta_bytes}
        if args.per_mailbox:
            summary["per_mailbox"] = {m.address: {"bytes": m.bytes, "messages": m.messages}
                                      for m in mailboxes}
        json.dump(summary, sys.stdout)
        sys.stdout.write("\n")


if __name__ == "__main__":
    main()
