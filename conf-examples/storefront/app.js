/*
 * The customer page: shows the recharge card of one order, waiting for
 * it while the order is pending.
 *
 * It asks GET <api><id>/card with the session cookie the storefront set
 * at login (HttpOnly: this script never sees it) and the chosen language
 * in Accept-Language: once as it opens (the order's state at once), then,
 * while the order is pending, with ?wait=25. A module that holds the
 * request (ocdz_card_wait) answers when the card is stored; one that
 * does not answers 409 at once, and the page then waits a few seconds
 * before asking again.
 *
 * The card code lives in one variable and in the page's text only: never
 * in a URL, storage, the title or the console; it is removed when the
 * page is left.
 */

(function () {
    'use strict';

    var WAIT = 25;                  /* seconds the server may hold us */
    var HELD_MS = 3000;             /* a 409 slower than this was held */

    var TEXT = {
        en: {
            docTitle: 'Your internet recharge card',
            docReady: 'Card ready',
            brand: 'Storefront',
            skip: 'Skip to content',
            language: 'Language',
            pageTitle: 'Your internet recharge card',
            orderLabel: 'Order',
            stepReceived: 'Order received',
            stepOperator: 'With the operator',
            stepReady: 'Card ready',
            loading: 'Checking your order…',
            waitingTitle: 'Your card is being prepared',
            statusLabel: 'Status',
            colon: ':',
            status: {
                PENDING: 'Order received',
                HANDLING: 'With the operator',
                QUEUED: 'Scheduled by the operator',
                UNKNOWN_ERROR: 'Awaiting confirmation',
                ERROR: 'Being checked by our team'
            },
            waitingText: {
                PENDING: 'This usually takes less than a minute. Keep this page open: your card appears here as soon as it is ready.',
                HANDLING: 'This usually takes less than a minute. Keep this page open: your card appears here as soon as it is ready.',
                QUEUED: 'The operator has scheduled this recharge; it can take 12 to 48 hours. You can close this page and come back later: your card will be here.',
                UNKNOWN_ERROR: 'The operator has not confirmed this recharge yet. We keep checking; it can take up to 24 hours. You will not be charged twice.',
                ERROR: 'Our support team needs to look at this order. You do not need to do anything; contact support if you have a question.'
            },
            checkedAt: 'Last checked at {t}. This page keeps checking by itself.',
            cardTitle: 'Your card is ready',
            codeLabel: 'Card code',
            copy: 'Copy code',
            copied: 'Code copied',
            copyDone: 'The card code is in your clipboard.',
            copyManual: 'Select the code and copy it (Ctrl+C, or a long press on a phone).',
            keepPrivate: 'Keep this code private: anyone who has it can use it.',
            transaction: 'Transaction number',
            date: 'Date',
            type: 'Type',
            line: 'Line',
            amount: 'Amount',
            currency: 'DA',
            typeName: { ADSL: 'ADSL (landline internet)', '4G': '4G LTE' },
            cardAnnounce: 'Your card is ready.',
            operatorMessage: 'Message from the operator',
            signIn: 'Sign in',
            openSecure: 'Open the secure page',
            retry: 'Try again now',
            reference: 'Reference',
            retryIn: 'Trying again in {s} seconds.',
            noscript: 'This page needs JavaScript to show your card.',
            footer: 'Card codes are shown only to the customer who bought them, and this page never stores them.',
            errors: {
                NO_ORDER: ['No order selected', 'Open this page from the link in your order confirmation or from your account.'],
                INVALID_TOPUP_ID: ['This order link is not valid', 'Open this page from the link in your order confirmation or from your account.'],
                SESSION_REQUIRED: ['Please sign in', 'Your session has ended. Sign in again to see your card.'],
                HTTPS_REQUIRED: ['A secure connection is required', 'For your safety, cards are only shown over a secure connection (https).'],
                ORDER_NOT_FOUND: ['Order not found', 'We could not find this order in your account. Check that you are signed in with the account you used to buy the card.'],
                METHOD_NOT_ALLOWED: ['The request was refused', 'This page could not ask for your card correctly. Reload the page; if it happens again, contact support.'],
                ORDER_REFUNDED: ['This order was refunded', 'The recharge could not be completed, so the amount was refunded. No card was issued.'],
                DELIVERY_FAILED: ['Your card cannot be shown right now', 'Your order is complete, but the card cannot be displayed at the moment. Our support team has been alerted; please try again later.'],
                INTERNAL_ERROR: ['Something went wrong on our side', 'We could not look up your order.'],
                SERVICE_UNAVAILABLE: ['Service temporarily unavailable', 'The shop cannot look up your order at the moment.'],
                RATE_LIMITED: ['Too many requests', 'Please wait a moment.'],
                NETWORK: ['Connection problem', 'We could not reach the shop. Check your internet connection.'],
                UNEXPECTED: ['Something went wrong', 'The shop gave an unexpected answer.']
            }
        },

        fr: {
            docTitle: 'Votre carte de recharge internet',
            docReady: 'Carte prête',
            brand: 'Boutique',
            skip: 'Aller au contenu',
            language: 'Langue',
            pageTitle: 'Votre carte de recharge internet',
            orderLabel: 'Commande',
            stepReceived: 'Commande reçue',
            stepOperator: 'Chez l’opérateur',
            stepReady: 'Carte prête',
            loading: 'Vérification de votre commande…',
            waitingTitle: 'Votre carte est en préparation',
            statusLabel: 'État',
            colon: '\u202f:',
            status: {
                PENDING: 'Commande reçue',
                HANDLING: 'Chez l’opérateur',
                QUEUED: 'Programmée par l’opérateur',
                UNKNOWN_ERROR: 'En attente de confirmation',
                ERROR: 'En vérification par notre équipe'
            },
            waitingText: {
                PENDING: 'Cela prend généralement moins d’une minute. Gardez cette page ouverte : votre carte s’affichera ici dès qu’elle sera prête.',
                HANDLING: 'Cela prend généralement moins d’une minute. Gardez cette page ouverte : votre carte s’affichera ici dès qu’elle sera prête.',
                QUEUED: 'L’opérateur a programmé cette recharge ; cela peut prendre de 12 à 48 heures. Vous pouvez fermer cette page et revenir plus tard : votre carte sera ici.',
                UNKNOWN_ERROR: 'L’opérateur n’a pas encore confirmé cette recharge. Nous continuons à vérifier ; cela peut prendre jusqu’à 24 heures. Vous ne serez pas débité deux fois.',
                ERROR: 'Notre équipe d’assistance doit examiner cette commande. Vous n’avez rien à faire ; contactez l’assistance si vous avez une question.'
            },
            checkedAt: 'Dernière vérification à {t}. Cette page continue de vérifier toute seule.',
            cardTitle: 'Votre carte est prête',
            codeLabel: 'Code de la carte',
            copy: 'Copier le code',
            copied: 'Code copié',
            copyDone: 'Le code de la carte est dans votre presse-papiers.',
            copyManual: 'Sélectionnez le code et copiez-le (Ctrl+C, ou un appui long sur un téléphone).',
            keepPrivate: 'Gardez ce code pour vous : toute personne qui le possède peut l’utiliser.',
            transaction: 'Numéro de transaction',
            date: 'Date',
            type: 'Type',
            line: 'Ligne',
            amount: 'Montant',
            currency: 'DA',
            typeName: { ADSL: 'ADSL (internet fixe)', '4G': '4G LTE' },
            cardAnnounce: 'Votre carte est prête.',
            operatorMessage: 'Message de l’opérateur',
            signIn: 'Se connecter',
            openSecure: 'Ouvrir la page sécurisée',
            retry: 'Réessayer maintenant',
            reference: 'Référence',
            retryIn: 'Nouvel essai dans {s} secondes.',
            noscript: 'Cette page a besoin de JavaScript pour afficher votre carte.',
            footer: 'Les codes ne sont montrés qu’au client qui les a achetés, et cette page ne les conserve jamais.',
            errors: {
                NO_ORDER: ['Aucune commande sélectionnée', 'Ouvrez cette page depuis le lien de votre confirmation de commande ou depuis votre compte.'],
                INVALID_TOPUP_ID: ['Ce lien de commande n’est pas valide', 'Ouvrez cette page depuis le lien de votre confirmation de commande ou depuis votre compte.'],
                SESSION_REQUIRED: ['Veuillez vous connecter', 'Votre session a expiré. Reconnectez-vous pour voir votre carte.'],
                HTTPS_REQUIRED: ['Une connexion sécurisée est requise', 'Pour votre sécurité, les cartes ne s’affichent que sur une connexion sécurisée (https).'],
                ORDER_NOT_FOUND: ['Commande introuvable', 'Nous ne trouvons pas cette commande dans votre compte. Vérifiez que vous êtes connecté avec le compte utilisé pour acheter la carte.'],
                METHOD_NOT_ALLOWED: ['La demande a été refusée', 'Cette page n’a pas pu demander votre carte correctement. Rechargez la page ; si cela se reproduit, contactez l’assistance.'],
                ORDER_REFUNDED: ['Cette commande a été remboursée', 'La recharge n’a pas pu aboutir, le montant a donc été remboursé. Aucune carte n’a été émise.'],
                DELIVERY_FAILED: ['Votre carte ne peut pas être affichée pour le moment', 'Votre commande est terminée, mais la carte ne peut pas être affichée pour l’instant. Notre équipe d’assistance a été prévenue ; réessayez plus tard.'],
                INTERNAL_ERROR: ['Une erreur s’est produite de notre côté', 'Nous n’avons pas pu consulter votre commande.'],
                SERVICE_UNAVAILABLE: ['Service temporairement indisponible', 'La boutique ne peut pas consulter votre commande pour le moment.'],
                RATE_LIMITED: ['Trop de demandes', 'Veuillez patienter un instant.'],
                NETWORK: ['Problème de connexion', 'Impossible de joindre la boutique. Vérifiez votre connexion internet.'],
                UNEXPECTED: ['Une erreur s’est produite', 'La boutique a donné une réponse inattendue.']
            }
        },

        ar: {
            docTitle: 'بطاقة تعبئة الإنترنت الخاصة بك',
            docReady: 'البطاقة جاهزة',
            brand: 'المتجر',
            skip: 'انتقل إلى المحتوى',
            language: 'اللغة',
            pageTitle: 'بطاقة تعبئة الإنترنت الخاصة بك',
            orderLabel: 'الطلب',
            stepReceived: 'تم استلام الطلب',
            stepOperator: 'لدى المتعامل',
            stepReady: 'البطاقة جاهزة',
            loading: 'جارٍ التحقق من طلبك…',
            waitingTitle: 'بطاقتك قيد التحضير',
            statusLabel: 'الحالة',
            colon: ':',
            status: {
                PENDING: 'تم استلام الطلب',
                HANDLING: 'لدى المتعامل',
                QUEUED: 'مجدول لدى المتعامل',
                UNKNOWN_ERROR: 'في انتظار التأكيد',
                ERROR: 'قيد المراجعة من طرف فريقنا'
            },
            waitingText: {
                PENDING: 'يستغرق ذلك عادةً أقل من دقيقة. أبقِ هذه الصفحة مفتوحة: ستظهر بطاقتك هنا فور جاهزيتها.',
                HANDLING: 'يستغرق ذلك عادةً أقل من دقيقة. أبقِ هذه الصفحة مفتوحة: ستظهر بطاقتك هنا فور جاهزيتها.',
                QUEUED: 'قام المتعامل بجدولة عملية التعبئة هذه، وقد تستغرق من 12 إلى 48 ساعة. يمكنك إغلاق هذه الصفحة والعودة لاحقاً: ستجد بطاقتك هنا.',
                UNKNOWN_ERROR: 'لم يؤكد المتعامل عملية التعبئة بعد. نواصل التحقق، وقد يستغرق ذلك حتى 24 ساعة. لن يُخصم المبلغ مرتين.',
                ERROR: 'يحتاج فريق الدعم لدينا إلى مراجعة هذا الطلب. لا داعي لأي إجراء من جهتك، وتواصل مع الدعم إن كان لديك أي سؤال.'
            },
            checkedAt: 'آخر تحقق على الساعة {t}. تواصل هذه الصفحة التحقق تلقائياً.',
            cardTitle: 'بطاقتك جاهزة',
            codeLabel: 'رمز البطاقة',
            copy: 'نسخ الرمز',
            copied: 'تم نسخ الرمز',
            copyDone: 'رمز البطاقة موجود في الحافظة.',
            copyManual: 'حدّد الرمز وانسخه (Ctrl+C، أو ضغطة مطوّلة على الهاتف).',
            keepPrivate: 'احتفظ بهذا الرمز لنفسك: يمكن لأي شخص يحصل عليه أن يستخدمه.',
            transaction: 'رقم المعاملة',
            date: 'التاريخ',
            type: 'النوع',
            line: 'الخط',
            amount: 'المبلغ',
            currency: 'دج',
            typeName: { ADSL: 'ADSL (الإنترنت الثابت)', '4G': '4G LTE' },
            cardAnnounce: 'بطاقتك جاهزة.',
            operatorMessage: 'رسالة من المتعامل',
            signIn: 'تسجيل الدخول',
            openSecure: 'افتح الصفحة الآمنة',
            retry: 'أعد المحاولة الآن',
            reference: 'المرجع',
            retryIn: 'ستتم المحاولة مجدداً بعد {s} ثانية.',
            noscript: 'تحتاج هذه الصفحة إلى JavaScript لعرض بطاقتك.',
            footer: 'لا تُعرض رموز البطاقات إلا للزبون الذي اشتراها، ولا تحتفظ بها هذه الصفحة أبداً.',
            errors: {
                NO_ORDER: ['لم يتم تحديد أي طلب', 'افتح هذه الصفحة من الرابط الموجود في تأكيد طلبك أو من حسابك.'],
                INVALID_TOPUP_ID: ['رابط الطلب هذا غير صالح', 'افتح هذه الصفحة من الرابط الموجود في تأكيد طلبك أو من حسابك.'],
                SESSION_REQUIRED: ['يرجى تسجيل الدخول', 'انتهت جلستك. سجّل الدخول مجدداً لعرض بطاقتك.'],
                HTTPS_REQUIRED: ['يلزم اتصال آمن', 'حفاظاً على أمانك، لا تُعرض البطاقات إلا عبر اتصال آمن (https).'],
                ORDER_NOT_FOUND: ['الطلب غير موجود', 'لم نعثر على هذا الطلب في حسابك. تأكد من أنك سجّلت الدخول بالحساب الذي استخدمته لشراء البطاقة.'],
                METHOD_NOT_ALLOWED: ['تم رفض الطلب', 'تعذّر على هذه الصفحة طلب بطاقتك بشكل صحيح. أعد تحميل الصفحة، وإن تكرر ذلك فتواصل مع الدعم.'],
                ORDER_REFUNDED: ['تم استرجاع مبلغ هذا الطلب', 'تعذّر إتمام عملية التعبئة، لذا تم استرجاع المبلغ. لم يتم إصدار أي بطاقة.'],
                DELIVERY_FAILED: ['لا يمكن عرض بطاقتك حالياً', 'اكتمل طلبك، لكن لا يمكن عرض البطاقة في الوقت الحالي. تم إبلاغ فريق الدعم؛ يرجى المحاولة لاحقاً.'],
                INTERNAL_ERROR: ['حدث خطأ من جهتنا', 'تعذّر علينا الاطلاع على طلبك.'],
                SERVICE_UNAVAILABLE: ['الخدمة غير متاحة مؤقتاً', 'لا يمكن للمتجر الاطلاع على طلبك في الوقت الحالي.'],
                RATE_LIMITED: ['طلبات كثيرة جداً', 'يرجى الانتظار قليلاً.'],
                NETWORK: ['مشكلة في الاتصال', 'تعذّر الوصول إلى المتجر. تحقق من اتصالك بالإنترنت.'],
                UNEXPECTED: ['حدث خطأ ما', 'قدّم المتجر رداً غير متوقع.']
            }
        }
    };

    var LOCALE = { en: 'en-GB', fr: 'fr-DZ', ar: 'ar-DZ-u-nu-latn' };

    /* answers that end the page's work, and those it recovers from */
    var FINAL = {
        NO_ORDER: 1, INVALID_TOPUP_ID: 1, SESSION_REQUIRED: 1,
        HTTPS_REQUIRED: 1, ORDER_NOT_FOUND: 1, METHOD_NOT_ALLOWED: 1,
        ORDER_REFUNDED: 1, DELIVERY_FAILED: 1
    };

    var api = meta('ocdz-api', '/api/internet-orders/');
    var signIn = meta('ocdz-sign-in', '');

    /* an endpoint on another origin needs ocdz_cors_origins (and the
       page's connect-src) to list this one */
    var sameOrigin = new URL(api, location.href).origin === location.origin;

    var lang = 'en';
    var orderId = null;
    var view = null;            /* what is shown: see render() */
    var secret = null;          /* the card code, while it is shown */
    var card = null;            /* the rest of the 200 answer */
    var generation = 0;         /* answers to an older question are dropped */
    var inflight = null;        /* its AbortController */
    var timer = null;           /* the next question */
    var attempts = 0;           /* questions in a row that failed */
    var waitingSince = 0;
    var polls = 0;              /* 409s not held, while waiting */
    var lastChecked = null;
    var copyTimer = null;

    function $(id) {
        return document.getElementById(id);
    }

    function meta(name, dflt) {
        var m = document.querySelector('meta[name="' + name + '"]');
        return m && m.content ? m.content : dflt;
    }

    function t(key) {
        return TEXT[lang][key];
    }

    function fill(text, vars) {
        return text.replace(/\{(\w+)\}/g, function (all, k) {
            return vars[k] !== undefined ? String(vars[k]) : all;
        });
    }

    function show(id, on) {
        $(id).hidden = !on;
    }

    /* --- language --------------------------------------------------------- */

    function pickLanguage() {
        var q = new URLSearchParams(location.search).get('lang');
        var saved = null;
        var prefs, i, base;

        if (q && TEXT[q.toLowerCase()]) {
            return q.toLowerCase();
        }

        try {
            saved = window.localStorage.getItem('ocdz-lang');
        } catch (e) {
            saved = null;
        }

        if (saved && TEXT[saved]) {
            return saved;
        }

        prefs = navigator.languages || [navigator.language || 'en'];

        for (i = 0; i < prefs.length; i++) {
            base = String(prefs[i]).slice(0, 2).toLowerCase();
            if (TEXT[base]) {
                return base;
            }
        }

        return 'en';
    }

    function applyLanguage() {
        var nodes = document.querySelectorAll('[data-i18n]');
        var i, key;

        document.documentElement.lang = lang;
        document.documentElement.dir = lang === 'ar' ? 'rtl' : 'ltr';
        $('lang').value = lang;

        for (i = 0; i < nodes.length; i++) {
            key = nodes[i].getAttribute('data-i18n');
            if (typeof TEXT[lang][key] === 'string') {
                nodes[i].textContent = TEXT[lang][key];
            }
        }
    }

    function setLanguage(next) {
        if (!TEXT[next] || next === lang) {
            return;
        }

        lang = next;

        try {
            window.localStorage.setItem('ocdz-lang', lang);
        } catch (e) {
            /* a preference only */
        }

        applyLanguage();
        copyReset();
        render(false);

        /* the instructions come in the language asked: ask again */
        if (view && (view.kind === 'card' || view.kind === 'waiting'
                     || view.kind === 'loading'))
        {
            ask();
        }
    }

    /* --- asking the endpoint ---------------------------------------------- */

    function schedule(ms) {
        clearTimeout(timer);
        timer = setTimeout(ask, ms);
    }

    function jitter(ms) {
        return Math.round(ms * (0.9 + Math.random() * 0.2));
    }

    function backoff(first, max) {
        return Math.min(max, first * Math.pow(2, Math.max(0, attempts - 1)));
    }

    function retryAfter(res, dflt) {
        var v = parseInt(res.headers.get('Retry-After') || '', 10);
        return (isFinite(v) && v >= 0 ? Math.min(Math.max(v, 1), 120) : dflt)
               * 1000;
    }

    function ask() {
        var gen, ctrl, started, killer;

        clearTimeout(timer);

        if (inflight) {
            inflight.abort();
        }

        gen = ++generation;
        ctrl = new AbortController();
        inflight = ctrl;
        started = Date.now();

        /* a held request lasts WAIT seconds; past that, the line is dead */
        killer = setTimeout(function () { ctrl.abort(); },
                            (WAIT + 20) * 1000);

        /* held only once the customer sees that her order is pending */

        fetch(api + encodeURIComponent(orderId) + '/card'
              + (view && view.kind === 'waiting' ? '?wait=' + WAIT : ''), {
            method: 'GET',
            headers: { 'Accept': 'application/json', 'Accept-Language': lang },
            credentials: sameOrigin ? 'same-origin' : 'include',
            cache: 'no-store',
            redirect: 'error',
            referrerPolicy: 'no-referrer',
            signal: ctrl.signal
        }).then(function (res) {
            return res.text().then(function (text) {
                var body = null;

                try {
                    body = text ? JSON.parse(text) : null;
                } catch (e) {
                    body = null;
                }

                return { res: res, body: body };
            });
        }).then(function (a) {
            clearTimeout(killer);

            if (gen !== generation) {
                return;
            }

            inflight = null;
            answered(a.res, a.body, Date.now() - started);

        }, function () {
            clearTimeout(killer);

            if (gen !== generation) {
                return;             /* aborted for a newer question */
            }

            inflight = null;
            attempts++;
            failed('NETWORK', 0, backoff(2000, 30000));
        });
    }

    function answered(res, body, elapsed) {
        var code = body && body.success === false
                   && typeof body.error === 'string' ? body.error : null;
        var st = res.status;

        lastChecked = new Date();

        if (st === 200 && body && body.success === true
            && typeof body.cardCode === 'string')
        {
            attempts = 0;
            return showCard(body);
        }

        if (st === 409 && code === 'ORDER_NOT_READY') {
            attempts = 0;
            return waiting(body.status, elapsed);
        }

        if (code && FINAL[code]) {
            return failed(code, st, 0, code === 'ORDER_REFUNDED'
                                       ? body.refundMessage : null);
        }

        attempts++;

        if (st === 503 && code) {
            return failed(code, st, retryAfter(res, 5));
        }

        if (st === 429) {
            return failed('RATE_LIMITED', st, retryAfter(res, 10));
        }

        if (code === 'INTERNAL_ERROR') {
            return failed(code, st, backoff(5000, 60000));
        }

        failed('UNEXPECTED', st, backoff(3000, 60000));
    }

    function waiting(status, elapsed) {
        var first = view === null || view.kind !== 'waiting';
        var before = first ? null : view.status;
        var delay;

        if (!TEXT.en.status[status]) {
            status = 'HANDLING';
        }

        if (first) {
            waitingSince = Date.now();
            polls = 0;
        }

        if (elapsed >= HELD_MS) {
            delay = 250;                        /* held: ask again at once */

        } else if (status === 'QUEUED' || status === 'ERROR') {
            delay = 60000;

        } else if (status === 'UNKNOWN_ERROR') {
            delay = 20000;

        } else {
            /* not held: 2, 3, 5 s, then every 5 s, every 15 s after 2 min */
            delay = Date.now() - waitingSince > 120000 ? 15000
                    : [2000, 3000, 5000][Math.min(polls++, 2)];
        }

        forget();
        view = { kind: 'waiting', status: status };
        render(status !== before);
        schedule(jitter(delay));
    }

    function failed(code, status, retryMs, detail) {
        forget();
        view = { kind: 'error', code: code, status: status, detail: detail,
                 retry: retryMs ? Math.round(retryMs / 1000) : 0 };
        render(true);

        if (retryMs) {
            schedule(retryMs);
        }
    }

    function showCard(body) {
        var wasCard = view && view.kind === 'card';

        secret = body.cardCode;
        card = {
            transactionNumber: body.transactionNumber,
            processedDate: body.processedDate,
            type: body.type,
            number: body.number,
            value: body.value,
            instructions: body.instructions || null
        };

        view = { kind: 'card' };
        render(!wasCard);
    }

    /* the card is dropped: from the page, and from this script */
    function forget() {
        var code = $('card-code');

        secret = null;
        card = null;

        while (code.firstChild) {
            code.removeChild(code.firstChild);
        }

        $('instr-steps').textContent = '';
        $('copy-feedback').textContent = '';
    }

    /* --- rendering ---------------------------------------------------------- */

    function render(announce) {
        var kind = view ? view.kind : 'loading';

        show('view-loading', kind === 'loading');
        show('view-waiting', kind === 'waiting');
        show('view-card', kind === 'card');
        show('view-error', kind === 'error');

        document.title = (kind === 'card' ? '✓ ' + t('docReady') + ' · ' : '')
                         + t('docTitle');

        progress(kind);

        if (kind === 'waiting') {
            renderWaiting(announce);
        } else if (kind === 'card') {
            renderCard(announce);
        } else if (kind === 'error') {
            renderError(announce);
        }
    }

    function progress(kind) {
        var steps = $('progress').children;
        var at = kind === 'card' ? 3
                 : kind === 'waiting' ? (view.status === 'PENDING' ? 1 : 2)
                 : 0;
        var i;

        show('progress', at > 0);

        for (i = 0; i < steps.length; i++) {
            steps[i].className = i + 1 < at || at === 3 ? 'done'
                                 : i + 1 === at ? 'current' : '';
            if (i + 1 === at && at !== 3) {
                steps[i].setAttribute('aria-current', 'step');
            } else {
                steps[i].removeAttribute('aria-current');
            }
        }
    }

    function renderWaiting(announce) {
        var s = view.status;
        var name = t('status')[s];
        var badge = $('waiting-status');

        badge.textContent = name;
        badge.setAttribute('data-status', s);
        $('waiting-text').textContent = t('waitingText')[s];
        $('waiting-checked').textContent = lastChecked
            ? fill(t('checkedAt'), { t: time(lastChecked) }) : '';

        if (announce) {
            say(t('waitingTitle') + '. ' + t('statusLabel') + ': ' + name);
        }
    }

    function renderCard(announce) {
        var code = $('card-code');
        var steps = $('instr-steps');
        var names = t('typeName');
        var ins = card.instructions;
        var i, group, li, d;

        while (code.firstChild) {
            code.removeChild(code.firstChild);
        }

        /* groups of four for the eye; copying takes the code as it is */
        for (i = 0; i < secret.length; i += 4) {
            group = document.createElement('span');
            group.className = 'code-group';
            group.textContent = secret.slice(i, i + 4);
            code.appendChild(group);
        }

        $('d-trans').textContent = card.transactionNumber || '—';

        d = card.processedDate ? new Date(card.processedDate) : null;
        if (d && !isNaN(d.getTime())) {
            $('d-date').textContent = new Intl.DateTimeFormat(LOCALE[lang], {
                dateStyle: 'long', timeStyle: 'short', hourCycle: 'h23'
            }).format(d);
            $('d-date').setAttribute('datetime', d.toISOString());
        } else {
            $('d-date').textContent = card.processedDate || '—';
            $('d-date').removeAttribute('datetime');
        }

        $('d-type').textContent = names[card.type] || card.type || '—';
        $('d-number').textContent = card.number || '—';
        $('d-value').textContent = typeof card.value === 'number'
            ? new Intl.NumberFormat(LOCALE[lang]).format(card.value) + ' '
              + t('currency')
            : '—';

        steps.textContent = '';

        if (ins) {
            $('instr-title').textContent = ins.title || '';
            for (i = 0; ins.steps && i < ins.steps.length; i++) {
                li = document.createElement('li');
                li.textContent = ins.steps[i];
                steps.appendChild(li);
            }
            $('instr-support').textContent = ins.support || '';
        }

        show('instr-title', !!ins);

        if (announce) {
            say(t('cardAnnounce'));
            $('card-title').focus();
        }
    }

    function renderError(announce) {
        var e = t('errors')[view.code] || t('errors').UNEXPECTED;
        var text = e[1];
        var link = $('sign-in');

        $('error-title').textContent = e[0];

        if (view.retry) {
            text += ' ' + fill(t('retryIn'), { s: view.retry });
        }

        $('error-text').textContent = text;

        show('error-detail', !!view.detail);
        $('error-detail-text').textContent = view.detail || '';

        show('sign-in', view.code === 'SESSION_REQUIRED' && !!signIn);
        if (signIn) {
            link.href = signIn + '?order=' + encodeURIComponent(orderId || '');
        }

        show('https-link', view.code === 'HTTPS_REQUIRED');
        $('https-link').href = 'https://' + location.host + location.pathname
                               + location.search;

        show('retry', !FINAL[view.code] || view.code === 'DELIVERY_FAILED');

        show('error-ref', view.code !== 'NO_ORDER');
        $('error-code').textContent = view.code
            + (view.status ? ' · HTTP ' + view.status : '');

        if (announce) {
            say(e[0] + '. ' + text);
            $('error-title').focus();
        }
    }

    function say(text) {
        var live = $('live');

        /* the same words again are announced again */
        live.textContent = '';
        setTimeout(function () { live.textContent = text; }, 50);
    }

    function time(d) {
        return new Intl.DateTimeFormat(LOCALE[lang], {
            hour: '2-digit', minute: '2-digit', second: '2-digit',
            hourCycle: 'h23'
        }).format(d);
    }

    /* --- copying -------------------------------------------------------------- */

    function copyReset() {
        clearTimeout(copyTimer);
        $('copy').classList.remove('copied');
        $('copy-label').textContent = t('copy');
        $('copy-feedback').textContent = '';
    }

    function copied(ok) {
        clearTimeout(copyTimer);

        if (ok) {
            $('copy').classList.add('copied');
            $('copy-label').textContent = t('copied');
            $('copy-feedback').textContent = t('copyDone');
            copyTimer = setTimeout(function () {
                $('copy').classList.remove('copied');
                $('copy-label').textContent = t('copy');
            }, 2500);
            return;
        }

        selectCode();
        $('copy-feedback').textContent = t('copyManual');
    }

    function copyCode() {
        var code = secret;

        if (!code) {
            return;
        }

        if (navigator.clipboard && window.isSecureContext) {
            navigator.clipboard.writeText(code).then(function () {
                copied(true);
            }, function () {
                copied(legacyCopy(code));
            });
            return;
        }

        copied(legacyCopy(code));
    }

    /* for browsers without the Clipboard API (plain http) */
    function legacyCopy(code) {
        var area = document.createElement('textarea');
        var ok = false;

        area.value = code;
        area.setAttribute('readonly', '');
        area.setAttribute('aria-hidden', 'true');
        area.className = 'offscreen';
        document.body.appendChild(area);
        area.select();

        try {
            ok = document.execCommand('copy');
        } catch (e) {
            ok = false;
        }

        area.value = '';
        document.body.removeChild(area);
        $('copy').focus();

        return ok;
    }

    function selectCode() {
        var range = document.createRange();
        var sel = window.getSelection();

        range.selectNodeContents($('card-code'));
        sel.removeAllRanges();
        sel.addRange(range);
    }

    /* --- start ---------------------------------------------------------------- */

    function start() {
        orderId = new URLSearchParams(location.search).get('order');
        lang = pickLanguage();
        applyLanguage();

        $('lang').addEventListener('change', function (ev) {
            setLanguage(ev.target.value);
        });

        $('copy').addEventListener('click', copyCode);
        $('retry').addEventListener('click', function () {
            attempts = 0;
            view = null;
            render(false);
            ask();
        });

        window.addEventListener('online', function () {
            if (view && view.kind === 'error' && !FINAL[view.code]) {
                ask();
            }
        });

        /* leaving: nothing of the card stays in the page */
        window.addEventListener('pagehide', function () {
            clearTimeout(timer);
            if (inflight) {
                inflight.abort();
                inflight = null;
            }
            generation++;
            forget();
            view = null;
        });

        /* back from the browser's cache: ask again */
        window.addEventListener('pageshow', function (ev) {
            if (ev.persisted && orderId) {
                render(false);
                ask();
            }
        });

        if (!orderId) {
            failed('NO_ORDER', 0, 0);
            return;
        }

        $('order-id').textContent = orderId;
        show('order-ref', true);

        render(false);
        ask();
    }

    start();
}());
