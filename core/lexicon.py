"""Words for retrieval: what to ignore, what to join, what means the same.

Deliberately generic to customer-support chat (prices, accounts, shipping of
messages, notifications...), not to any one knowledge base: a widget's own
vocabulary comes from its entries. Synonyms are single words; multi-word
expressions are joined into one word first by ``PHRASES`` ("log in" ->
"login"), in questions and entries alike.
"""

from __future__ import annotations

# English function words plus the filler of chat questions ("hi, I was
# wondering if you could tell me..."): they say nothing about the topic.
STOPWORDS: frozenset[str] = frozenset(
    """
    a about above after again against all also am an and any anyone anything are aren as at
    be because been before being below between both but by can cannot could couldn did didn do
    does doesn doing don down during each either else ever every few for from further get gets
    getting got had hadn has hasn have haven having he her here hers herself him himself his how
    i if in into is isn it its itself just let lets me might mine more most must mustn my myself
    no nor not now of off on once one only or other ought our ours ourselves out over own really
    same shall she should shouldn so some somebody someone something such than that the their
    theirs them themselves then there these they this those through thus to too under until up
    upon us very was wasn we were weren what whats when where which while who whom whose why will
    with won would wouldn yet you your yours yourself yourselves
    hi hello hey hiya please pls plz thanks thank thx ok okay yes yeah sure well
    want wanted wanting wish wonder wondering like would know tell let make makes made
    exactly possible way ways able actually basically just kind sort quick quickly
    anyway maybe perhaps still already currently right now thing things stuff
    use using used go going im ive id youre dont doesnt cant isnt wont whats hows whos
    """.split()
)

# Multi-word expressions that mean one thing, joined before stemming.
PHRASES: dict[str, str] = {
    "e mail": "email",
    "e-mail": "email",
    "log in": "login",
    "logged in": "login",
    "log on": "login",
    "sign in": "signin",
    "signed in": "signin",
    "sign up": "signup",
    "signed up": "signup",
    "set up": "setup",
    "back up": "backup",
    "web hook": "webhook",
    "web hooks": "webhooks",
    "chat gpt": "chatgpt",
    "open source": "opensource",
    "open-source": "opensource",
    "check out": "checkout",
    "business hours": "hours",
    "working hours": "hours",
    "opening hours": "hours",
    "office hours": "hours",
    "support hours": "hours",
    "slash commands": "commands",
    "slash command": "command",
    "time zone": "timezone",
    "time zones": "timezones",
    "two factor": "2fa",
    "two-factor": "2fa",
    "screen share": "screenshare",
    "screen sharing": "screenshare",
    "chat bot": "chatbot",
    "pop up": "popup",
    "pop-up": "popup",
    "dark mode": "darkmode",
    "add on": "addon",
    "add-on": "addon",
    "plug in": "plugin",
    "plug-in": "plugin",
}

# Words that stand for one another in support questions. Each group is
# symmetric; a match through a synonym counts a little less than the word.
SYNONYM_GROUPS: tuple[frozenset[str], ...] = tuple(
    frozenset(group.split())
    for group in (
        # money
        "price pricing cost costs fee fees pay paid payment charge charged expensive cheap free gratis",
        "buy purchase order",
        "cancel unsubscribe terminate",
        "refund refunds reimburse",
        "licence license licensing opensource",
        # accounts and access
        "login signin logon authenticate",
        "signup register registration",
        "account accounts profile",
        "password passwords passcode passphrase",
        "key keys token tokens credential credentials secret",
        "permission permissions access role roles",
        "invite invitation",
        # people
        "agent agents operator operators staff colleague colleagues coworker coworkers teammate teammates "
        "employee employees rep reps representative representatives member members",
        "visitor visitors customer customers client clients guest guests user users buyer buyers",
        "team teams company organisation organization",
        "admin admins administrator administrators manager managers owner",
        # the product surface
        "website websites site sites webpage webpages page pages domain domains",
        "widget widgets launcher bubble chatbox button",
        "console dashboard panel portal interface ui",
        "conversation conversations chat chats thread threads transcript transcripts discussion",
        "message messages msg text texts",
        "note notes comment comments remark memo",
        "question questions query queries inquiry enquiry",
        "reply replies respond response responses answer answers",
        "form forms submission submissions",
        "file files attachment attachments attach upload uploads image images screenshot screenshots "
        "picture pictures photo photos document documents pdf",
        "notification notifications notify alert alerts push",
        "email emails mail inbox smtp",
        "phone phones mobile smartphone smartphones iphone android ios tablet cellphone",
        "browser browsers chrome firefox safari edge",
        "integration integrations integrate connect connection plugin plugins addon addons",
        "api rest endpoint endpoints http",
        "webhook webhooks callback callbacks",
        "documentation docs manual guide reference spec specification",
        "ai bot chatbot assistant llm gpt chatgpt claude gemini ollama model models",
        # running it
        "install installation installing setup deploy deployment",
        "configure configuration config settings options preferences",
        "environment env variable variables",
        "server servers host hosting hosted vps machine cloud",
        "container containers docker kubernetes",
        "database databases db sqlite postgres postgresql mysql storage",
        "upgrade upgrades update updates updating",
        "version versions release releases latest",
        "backup backups snapshot dump",
        "export exports download downloads extract",
        "import imports load bulk",
        "history archive archives past previous old",
        "store stored save saved keep kept",
        "delete remove erase wipe",
        "requirement requirements prerequisite prerequisites need needs dependency dependencies",
        "scale scaling scalable capacity concurrent simultaneous load",
        "slow slower speed performance fast faster latency lightweight heavy",
        "big bigger large size small tiny",
        "limit limits quota maximum max throttle",
        # availability
        "hours schedule schedules opening timetable calendar",
        "holiday holidays vacation closed",
        "timezone timezones zone",
        "offline away unavailable absent inactive idle",
        "online available present active",
        "duty shift",
        # looks
        "customize customise personalize personalise brand branding look style appearance theme design",
        "colour color colours colors",
        "position corner side placement",
        "language languages english french german spanish italian portuguese dutch japanese chinese "
        "translate translation translated locale localization",
        # actions
        "show display see appear view visible",
        "hide hidden invisible internal private",
        "close closing end finish resolve",
        "claim assign assigned take",
        "leave left quit exit",
        "start begin launch run",
        "stop halt pause",
        "enable activate",
        "disable deactivate",
        "create add new",
        "send deliver forward",
        "receive get",
        "allow permit",
        "restrict block prevent forbid stop",
        "report submit",
        "find locate",
        # trouble and safety
        "bug bugs error errors problem problems issue issues broken crash fail failure failing",
        "support assistance",
        "secure security safe safety protect protection encrypt encryption",
        "spam junk abuse",
        "privacy gdpr compliance compliant confidential personal",
        "data information info details",
        # code
        "snippet script code tag embed html",
        "javascript js script",
        "several multiple many numerous thousands hundreds",
    )
)

# Generic verbs and nouns of support questions ("how do I set...", "can I
# change..."): they count, but less than the words that name the topic.
WEAK_WORDS: frozenset[str] = frozenset(
    """
    set change add create enable disable turn find see show work works working do done
    get give take put send sent new old way ways thing place time
    support supports supported configure configuring configured
    """.split()
)

# Words the stemmer would fold into an unrelated word ("customer" and
# "customize" both become "custom"), kept apart.
STEM_EXCEPTIONS: dict[str, str] = {
    "customer": "customer",
    "customers": "customer",
    "personalize": "personaliz",
    "personalise": "personaliz",
    "personalized": "personaliz",
    "production": "production",
    "setting": "settings",
    "settings": "settings",
    "optional": "optional",
    "assistance": "assistance",
    "news": "news",
}
