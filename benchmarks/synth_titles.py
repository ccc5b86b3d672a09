"""The software the synthetic devices carry: titles as the discovery tools spell them.

Each Software entry says how one product (or runtime, driver, internal tool) shows up per
operating system (Windows ARP titles, macOS app names, deb/rpm package names, with versions
and publishers), and who has it:
- `base`: the chance that any device of that OS has it (scaled by `departments` weights);
- `product` + `on_holders`: installed on the devices of the people holding a seat of that
  product (or in its pool: MATLAB, SOLIDWORKS, SQL Server), `unlicensed`: the chance for a
  device of someone else (in `departments`, if given) to have it anyway.
Titles follow data/catalog.yaml's rules (checked by tests/test_generate.py); the unknown
internal tools and the Linux base packages match nothing on purpose.

`tail_titles(n)` adds the reference enterprise's long tail: n products of synthetic vendors
("Vendor 12 Product 345 2023 (x64)"), three releases each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MS = "Microsoft Corporation"
ADOBE = "Adobe Inc."
AUTODESK = "Autodesk, Inc."
JB = "JetBrains s.r.o."
UBUNTU = "Ubuntu Developers <ubuntu-devel-discuss@lists.ubuntu.com>"
REDHAT = "Red Hat, Inc."
ENGINEERS = {"Engineering": 1.0, "IT": 1.0, "Data & Analytics": 0.8}


@dataclass(frozen=True)
class Title:
    os: str  # windows | mac | deb | rpm
    name: str
    version: str
    publisher: str | None = None
    weight: float = 1.0
    bundle: str | None = None  # macOS bundle identifier


@dataclass(frozen=True)
class Software:
    key: str
    titles: tuple[Title, ...]
    base: dict[str, float] = field(default_factory=dict)
    departments: dict[str, float] | None = None
    product: str | None = None
    on_holders: float = 0.0
    unlicensed: float = 0.0


def W(name, version, publisher, weight=1.0):  # noqa: N802
    return Title("windows", name, version, publisher, weight)


def M(name, version, bundle, weight=1.0):  # noqa: N802
    return Title("mac", name, version, None, weight, bundle)


def D(name, version, maintainer=UBUNTU, weight=1.0):  # noqa: N802
    return Title("deb", name, version, maintainer, weight)


def R(name, version, vendor=REDHAT, weight=1.0):  # noqa: N802
    return Title("rpm", name, version, vendor, weight)


def S(key, *titles, **kw) -> Software:  # noqa: N802
    return Software(key, titles, **kw)


ALL = {"windows": 1.0, "mac": 1.0, "deb": 1.0, "rpm": 1.0}
WIN = {"windows": 1.0}

SOFTWARE = [
    # --- licensed products, on the devices of their holders -----------------------------
    S("m365", W("Microsoft 365 Apps for enterprise - en-us", "16.0.17928.20156", MS, 6),
      W("Microsoft 365 Apps for enterprise - de-de", "16.0.17928.20156", MS, 1),
      W("Microsoft 365 - en-us", "16.0.18129.20158", MS, 2),
      M("Microsoft Word", "16.91", "com.microsoft.Word"),
      product="MS-M365-E3", on_holders=0.97),
    S("m365-e5", W("Microsoft 365 Apps for enterprise - en-us", "16.0.18129.20158", MS),
      M("Microsoft Word", "16.91", "com.microsoft.Word"), product="MS-M365-E5", on_holders=0.97),
    S("outlook-mac", M("Microsoft Outlook", "16.91", "com.microsoft.Outlook"),
      product="MS-M365-E3", on_holders=0.9),
    S("visio", W("Microsoft Visio - en-us", "16.0.17928.20156", MS),
      product="MS-VISIO-PLAN2", on_holders=0.85),
    S("project", W("Microsoft Project - en-us", "16.0.17928.20156", MS),
      product="MS-PROJECT-PLAN3", on_holders=0.85),
    S("visual-studio", W("Visual Studio Professional 2022", "17.11.5", MS),
      product="MS-VISUAL-STUDIO-PRO", on_holders=0.9),
    S("sql-server", W("Microsoft SQL Server 2019 (64-bit)", "15.0.2000.5", MS),
      product="MS-SQL-SERVER-STD", on_holders=1.0),
    S("sql-setup", W("Microsoft SQL Server 2019 Setup (English)", "15.0.4375.4", MS),
      product="MS-SQL-SERVER-STD", on_holders=1.0),
    S("acrobat", W("Adobe Acrobat DC (64-bit)", "24.004.20220", ADOBE, 6),
      W("Adobe Acrobat (64-bit)", "24.005.20307", ADOBE, 3),
      M("Adobe Acrobat", "24.005.20307", "com.adobe.Acrobat.Pro"),
      product="ADOBE-ACROBAT-PRO", on_holders=0.92, unlicensed=0.01),
    S("creative-cloud", W("Adobe Creative Cloud", "6.4.0.361", ADOBE),
      M("Adobe Creative Cloud", "6.4.0.361", "com.adobe.acc.AdobeCreativeCloud"),
      product="ADOBE-CC-ALL-APPS", on_holders=0.95),
    S("bridge", W("Adobe Bridge 2025", "15.0.1.388", ADOBE),
      M("Adobe Bridge 2025", "15.0.1", "com.adobe.bridge15"), product="ADOBE-CC-ALL-APPS",
      on_holders=0.6),
    S("photoshop", W("Adobe Photoshop 2025", "26.1.0", ADOBE),
      M("Adobe Photoshop 2025", "26.1.0", "com.adobe.Photoshop"),
      product="ADOBE-PHOTOSHOP", on_holders=0.9),
    S("autocad", W("Autodesk AutoCAD 2024 - English", "24.3.61.0", AUTODESK),
      W("Autodesk AutoCAD 2025 - English", "25.0.58.0", AUTODESK),
      product="AUTODESK-AUTOCAD", on_holders=0.92, unlicensed=0.01,
      departments={"Design": 1.0, "Engineering": 0.3}),
    S("autodesk-genuine", W("Autodesk Genuine Service", "5.0.0.0", AUTODESK),
      product="AUTODESK-AUTOCAD", on_holders=0.8),
    S("revit", W("Autodesk Revit 2024", "24.2.0.63", AUTODESK), product="AUTODESK-REVIT",
      on_holders=0.9),
    S("intellij", W("IntelliJ IDEA 2024.2.4", "242.23726.103", JB),
      M("IntelliJ IDEA", "2024.2.4", "com.jetbrains.intellij"),
      D("intellij-idea-ultimate", "2024.2.4-1", "JetBrains <support@jetbrains.com>"),
      product="JETBRAINS-INTELLIJ-ULTIMATE", on_holders=0.9),
    S("pycharm", W("JetBrains PyCharm 2023.2.1", "232.9559.58", JB, 2),
      W("PyCharm 2024.2.4", "242.23726.102", JB, 3),
      M("PyCharm", "2024.2.4", "com.jetbrains.pycharm"),
      D("pycharm-professional", "2024.2.4-1", "JetBrains <support@jetbrains.com>"),
      product="JETBRAINS-PYCHARM-PRO", on_holders=0.9),
    S("tableau", W("Tableau Desktop 2023.1", "20231.23.0505.1444", "Tableau Software LLC"),
      W("Tableau 2024.2 (20242.24.0807.0327)", "20242.24.0807.0327", "Tableau Software LLC"),
      M("Tableau Desktop 2024.2", "20242.24.0807", "com.tableausoftware.tableaudesktop"),
      product="TABLEAU-DESKTOP", on_holders=0.9),
    S("matlab", W("MATLAB R2023a", "9.14", "MathWorks", 2), W("MATLAB R2024a", "24.1", "MathWorks"),
      M("MATLAB_R2024a", "24.1.0.2537033", "com.mathworks.matlab"),
      product="MATHWORKS-MATLAB", on_holders=0.95),
    S("solidworks", W("SOLIDWORKS 2022 SP05", "30.5.0.0030", "Dassault Systemes SolidWorks Corp"),
      W("SOLIDWORKS 2024 SP1.0", "32.1.0.0065", "Dassault Systemes SolidWorks Corp"),
      product="DS-SOLIDWORKS", on_holders=0.95),
    S("edrawings", W("eDrawings 2024", "32.1.0.0065", "Dassault Systemes SolidWorks Corp"),
      product="DS-SOLIDWORKS", on_holders=0.7),
    S("zoom", W("Zoom Workplace", "6.2.11 (53525)", "Zoom Video Communications, Inc.", 3),
      W("Zoom", "5.17.11 (34827)", "Zoom Video Communications, Inc."),
      M("zoom.us", "6.2.11", "us.zoom.xos"),
      D("zoom", "6.2.10.4983", "Zoom Video Communications, Inc. <support@zoom.us>"),
      product="ZOOM-WORKPLACE", on_holders=0.9, unlicensed=0.03),
    S("slack", W("Slack", "4.41.105", "Slack Technologies Inc."),
      M("Slack", "4.41.105", "com.tinyspeck.slackmacgap"),
      D("slack-desktop", "4.41.105", "Slack Technologies <feedback@slack.com>"),
      product="SLACK-PRO", on_holders=0.8),
    S("winrar", W("WinRAR 6.24 (64-bit)", "6.24.0", "win.rar GmbH", 2),
      W("WinRAR 7.01 (64-bit)", "7.01.0", "win.rar GmbH"), product="WINRAR", on_holders=0.95),
    # --- unlicensed and denied ---------------------------------------------------------------
    S("vmware", W("VMware Workstation", "17.5.2", "VMware, Inc."), base=WIN,
      departments={"Engineering": 0.05, "IT": 0.1}),
    S("winrar-unlicensed", W("WinRAR 6.24 (64-bit)", "6.24.0", "win.rar GmbH"),
      base={"windows": 0.02}),
    S("utorrent", W("µTorrent", "3.6.0.47142", "BitTorrent Inc.", 2),
      W("uTorrent", "3.5.5.46542", "BitTorrent Inc."), base={"windows": 0.012}),
    S("ccleaner", W("CCleaner", "6.29", "Piriform"), base={"windows": 0.02}),
    # --- freeware everyone has ----------------------------------------------------------------
    S("chrome", W("Google Chrome", "131.0.6778.86", "Google LLC", 3),
      W("Google Chrome", "130.0.6723.117", "Google LLC"),
      M("Google Chrome", "131.0.6778.86", "com.google.Chrome"),
      D("google-chrome-stable", "131.0.6778.85-1", "Chrome Linux Team <chromium-dev@chromium.org>"),
      R("google-chrome-stable", "131.0.6778.85-1", "Google Inc."),
      base={"windows": 0.85, "mac": 0.8, "deb": 0.6, "rpm": 0.5}),
    S("google-update", W("Google Update Helper", "1.3.36.372", "Google LLC"),
      base={"windows": 0.8}),
    S("firefox", W("Mozilla Firefox (x64 en-US)", "132.0.2", "Mozilla", 3),
      W("Mozilla Firefox ESR (x64 en-US)", "128.5.0", "Mozilla"),
      M("Firefox", "132.0.2", "org.mozilla.firefox"),
      D("firefox", "132.0.2+build2-0ubuntu0.22.04.1",
        "Ubuntu Mozilla Team <ubuntu-mozillateam@lists.ubuntu.com>"),
      R("firefox", "128.5.0-1.el9_4"), base={"windows": 0.3, "mac": 0.25, "deb": 0.7, "rpm": 0.7}),
    S("mozilla-maintenance", W("Mozilla Maintenance Service", "132.0.2", "Mozilla"),
      base={"windows": 0.28}),
    S("7zip", W("7-Zip 22.01 (x64)", "22.01", "Igor Pavlov", 2),
      W("7-Zip 23.01 (x64)", "23.01", "Igor Pavlov", 2),
      W("7-Zip 24.08 (x64)", "24.08", "Igor Pavlov"),
      D("p7zip-full", "16.02+dfsg-8"), R("p7zip", "16.02-31.el9", "Fedora Project"),
      base={"windows": 0.45, "deb": 0.5, "rpm": 0.3}),
    S("vlc", W("VLC media player", "3.0.20", "VideoLAN"), M("VLC", "3.0.21", "org.videolan.vlc"),
      D("vlc", "3.0.16-1build7"), base={"windows": 0.2, "mac": 0.15, "deb": 0.2}),
    S("notepadpp", W("Notepad++ (64-bit x64)", "8.6.9", "Notepad++ Team"), base={"windows": 0.25}),
    S("reader", W("Adobe Acrobat Reader DC", "24.004.20220", ADOBE, 2),
      W("Adobe Acrobat Reader - English", "24.005.20307", ADOBE),
      M("Adobe Acrobat Reader", "24.005.20307", "com.adobe.Reader"),
      base={"windows": 0.35, "mac": 0.3}),
    S("teams", W("Microsoft Teams", "24295.605.3225.8804", MS, 3),
      W("Microsoft Teams classic", "1.7.00.13456", MS),
      M("Microsoft Teams", "24295.605.3225.8804", "com.microsoft.teams2"),
      base={"windows": 0.9, "mac": 0.8}),
    S("onedrive", W("Microsoft OneDrive", "24.211.1020.0001", MS),
      M("OneDrive", "24.211.1020", "com.microsoft.OneDrive"), base={"windows": 0.95, "mac": 0.6}),
    S("edge", W("Microsoft Edge", "131.0.2903.63", MS), base={"windows": 1.0}),
    S("webview2", W("Microsoft Edge WebView2 Runtime", "131.0.2903.63", MS),
      base={"windows": 0.95}),
    S("vcredist-x64",
      W("Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.36.32532", "14.36.32532.0", MS,
        2),
      W("Microsoft Visual C++ 2015-2022 Redistributable (x64) - 14.40.33810", "14.40.33810.0", MS),
      base={"windows": 0.95}),
    S("vcredist-x86",
      W("Microsoft Visual C++ 2015-2022 Redistributable (x86) - 14.36.32532", "14.36.32532.0", MS),
      base={"windows": 0.85}),
    S("vcredist-2013",
      W("Microsoft Visual C++ 2013 Redistributable (x64) - 12.0.40664", "12.0.40664.0", MS),
      base={"windows": 0.45}),
    S("vcredist-2010",
      W("Microsoft Visual C++ 2010  x64 Redistributable - 10.0.40219", "10.0.40219", MS),
      base={"windows": 0.3}),
    S("dotnet", W("Microsoft .NET Runtime - 8.0.11 (x64)", "64.44.23191", MS),
      base={"windows": 0.6}),
    S("desktop-runtime", W("Microsoft Windows Desktop Runtime - 8.0.11 (x64)", "64.44.23191", MS),
      base={"windows": 0.55}),
    S("health-tools", W("Microsoft Update Health Tools", "5.72.0.0", MS), base={"windows": 0.7}),
    S("kb", W("Update for Windows 10 for x64-based Systems (KB5001716)", "8.94.0.0", MS),
      base={"windows": 0.25}),
    S("intel-graphics", W("Intel(R) Graphics Driver", "31.0.101.4502", "Intel Corporation"),
      base={"windows": 0.6}),
    S("realtek",
      W("Realtek High Definition Audio Driver", "6.0.9235.1", "Realtek Semiconductor Corp."),
      base={"windows": 0.55}),
    S("globalprotect", W("GlobalProtect", "6.2.4", "Palo Alto Networks"),
      M("GlobalProtect", "6.2.4", "com.paloaltonetworks.GlobalProtect.client"),
      base={"windows": 0.6, "mac": 0.6}),
    S("vscode", W("Microsoft Visual Studio Code (User)", "1.95.3", MS),
      M("Visual Studio Code", "1.95.3", "com.microsoft.VSCode"),
      D("code", "1.95.3-1731513102", "Microsoft Corporation <vscode-linux@microsoft.com>"),
      base={"windows": 0.5, "mac": 0.6, "deb": 0.8}, departments=ENGINEERS),
    S("git", W("Git", "2.47.0", "The Git Development Community"), D("git", "1:2.34.1-1ubuntu1.11"),
      R("git", "2.43.5-1.el9_4"), base=ALL, departments=ENGINEERS),
    S("python", W("Python 3.12.7 (64-bit)", "3.12.7150.0", "Python Software Foundation"),
      D("python3", "3.10.6-1~22.04.1"), R("python3", "3.9.18-3.el9_4.6"),
      base={"windows": 0.6, "deb": 1.0, "rpm": 1.0}, departments=ENGINEERS),
    S("putty", W("PuTTY release 0.81 (64-bit)", "0.81.0.0", "Simon Tatham"), base=WIN,
      departments={"IT": 0.7, "Engineering": 0.3}),
    S("pycharm-ce", W("PyCharm Community Edition 2024.2.4", "242.23726.102", JB), base=ALL,
      departments={"Data & Analytics": 0.3, "Engineering": 0.15}),
    S("intellij-ce", W("IntelliJ IDEA Community Edition 2024.2.4", "242.23726.103", JB),
      base=ALL, departments={"Engineering": 0.15}),
    S("safari", M("Safari", "18.1.1", "com.apple.Safari"), base={"mac": 1.0}),
    S("openssh", D("openssh-client", "1:8.9p1-3ubuntu0.10"), R("openssh-clients", "8.7p1-38.el9"),
      base={"deb": 1.0, "rpm": 1.0}),
    S("libc", D("libc6", "2.35-0ubuntu3.8"), R("glibc", "2.34-100.el9_4.4"),
      base={"deb": 1.0, "rpm": 1.0}),
    S("curl", D("curl", "7.81.0-1ubuntu1.18"), R("curl", "7.76.1-29.el9_4.1"),
      base={"deb": 0.9, "rpm": 0.9}),
    # --- internal tools nobody catalogued ----------------------------------------------------
    S("expense", W("Contoso Expense Helper", "3.2.1", "Contoso IT"), base={"windows": 0.15}),
    S("timesheet", W("ACME Timesheet Client 4.1", "4.1.0.12", "ACME Corp"), base={"windows": 0.1}),
    S("labels", W("Northwind Label Print Service", "2.0.7", "Northwind Traders"), base=WIN,
      departments={"Operations": 0.5}),
    S("vpn-helper", M("Contoso VPN Helper", "1.4", "com.contoso.vpnhelper"), base={"mac": 0.2}),
]  # fmt: skip


def tail_titles(n: int) -> list[Software]:
    """The long tail of the reference enterprise: n synthetic products, three releases each,
    Windows only, popularity falling with the product's number."""
    out = []
    for i in range(n):
        vendor = f"Vendor {i % 300}"
        chance = min(0.5, 2.0 / (i + 4))
        titles = tuple(
            W(f"{vendor} Product {i} {year} (x64)", f"{year - 2000}.{i % 7}.{i % 10}", vendor)
            for year in (2022, 2023, 2024)
        )
        out.append(Software(f"tail-{i}", titles, base={"windows": chance}))
    return out
