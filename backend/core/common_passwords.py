"""Common passwords refused for new and changed passwords (backend/core/security.py).

About a thousand of the passwords that lead published breach lists, written down from general
knowledge: the top of those lists (123456, password, qwerty, ...), keyboard walks, digit
runs, and the names, words, teams and places most often used as a password's core. Most are
shorter than the 10 characters the policy asks for anyway; they matter because the policy
also refuses one of them with only digits or symbols added ("Sunshine2024!"). Compared in
lower case. Add entries as whitespace-separated words.
"""

from __future__ import annotations

_LIST = """
123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123 baseball
abc123 football monkey letmein 696969 shadow master 666666 qwertyuiop 123321 mustang 1234567890
michael 654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx 123qwe killer trustno1 jordan
jennifer zxcvbnm asdfgh hunter buster soccer harley batman andrew tigger sunshine iloveyou
charlie robert thomas hockey ranger daniel starwars klaster 112233 george computer michelle
jessica pepper 1111 zxcvbn 555555 11111111 131313 freedom 777777 pass maggie 159753 aaaaaa
ginger princess joshua cheese amanda summer love ashley nicole chelsea biteme matthew access
yankees 987654321 dallas austin thunder taylor matrix william corvette hello martin heather
secret merlin diamond 1234qwer gfhjkm hammer silver 222222 88888888 anthony justin test bailey
q1w2e3r4t5 patrick internet scooter orange 11111 golfer cookie richard samantha bigdog guitar
jackson whatever mickey chicken sparky snoopy maverick phoenix camaro peanut morgan welcome
falcon cowboy ferrari samsung andrea smokey steelers joseph mercedes dakota arsenal eagles
melissa boomer booboo spider nascar monster tigers yellow xxxxxx 123123123 gateway marina diablo
bulldog qwer1234 compaq purple hardcore banana junior hannah 123654 porsche lakers iceman money
cowboys 987654 london tennis 999999 ncc1701 coffee scooby 0000 miller boston q1w2e3r4 brandon
yamaha chester mother forever johnny edward 333333 oliver redsox player nikita knight fender
barney midnight please brandy chicago badboy slayer rangers charles angel flower bigdaddy rabbit
wizard jasper enter rachel chris steven winner adidas victoria natasha 1q2w3e4r jasmine winter
prince panties marine ghbdtn fishing cocacola casper james 232323 raiders 888888 marlboro
gandalf asdfasdf crystal 87654321 12344321 golden 8675309 panther lauren angela thx1138 angels
madison winston shannon mike toyota blowme jack qwertyui 123abc 1q2w3e4r5t6y 123456a a123456
abcd1234 1234abcd password1 password12 password123 password1234 passw0rd p@ssw0rd p@ssword
pa55word pa$$word p4ssw0rd passwd pwd qwerty123 qwerty1234 qwertyuiop123 1q2w3e4r5t 1qaz2wsx3edc
zaq12wsx zaq1zaq1 !qaz2wsx 1qazxsw2 qazwsxedc qazwsxedcrfv 1qaz2wsx3edc4rfv q1w2e3r4t5y6
poiuytrewq mnbvcxz lkjhgfdsa asdfghjkl asdfghjkl; zxcvbnm123 asdf1234 zxcv1234 qwer qwerasdf
asdfqwer qweasdzxc 1qaz2wsx3edc4rfv5tgb 1234qwerasdf 0987654321 9876543210 0123456789 1111111111
2222222222 3333333333 4444444444 5555555555 6666666666 7777777777 8888888888 9999999999
0000000000 1212121212 1231231231 123123123123 1122334455 1234554321 1234512345 1029384756
1357924680 2468013579 1010101010 147258369 159753456 741852963 789456123 123654789 12341234
11223344 3141592653 31415926535 123456789a a123456789 123456789q q123456789 abcdefghij abcdef123
abcdefg abcdef abc abcd administrator admin admin123 admin1234 adminadmin administrator1 root
toor rootroot guest guestguest user username usuario default changeme changeme123 changethis
changeit resetme newpassword oldpassword temppassword temporary temp defaultpassword
adminpassword rootpassword userpassword guestpassword mypassword secretpassword supersecret
topsecret nopassword letmein123 letmeinnow welcome123 welcome1 welcometo opensesame
passwordpassword qwertyqwerty test123 test1234 testing testing123 testtest tester demo sample
example login logon 123qweasd 123qweasdzxc qweasd qwe123 asd123 zxc123 abc12345 iloveyou1
iloveyou2 iloveyou123 iloveu ilovegod ilovemymom ilovemyself iloveyoubaby loveyouforever
foreverlove alwaysforever onelove truelove mylove loveme lovely lovelove loveyou ihateyou
imissyou trustme believe blessed godisgood jesus jesus1 jesuschrist christ faith heaven
hallelujah amen princesa tequiero teamo amor amore jetaime ichliebedich sunflower strawberry
pineapple watermelon blueberry marshmallow cupcake sweetie sweetheart snickers skittles oreo
bubbles buttercup tinkerbell scoobydoo garfield mickeymouse minnie bambi simba nemo shrek elmo
pokemon pikachu naruto sasuke goku dragonball onepiece spiderman ironman captainamerica avengers
hulk thor wolverine deadpool joker harleyquinn startrek hobbit frodo gollum zelda mario luigi
sonic minecraft fortnite roblox overwatch warcraft starcraft counterstrike halo xbox playstation
nintendo gamer gaming liverpool manchester manutd chelseafc barcelona realmadrid juventus bayern
milan inter arsenalfc tottenham everton celtic rangersfc packers broncos patriots dolphins
giants jets bears lions vikings saints seahawks chiefs ravens texans titans bengals browns
redskins cardinals yankees1 redsox1 dodgers mets cubs whitesox braves astros bulls celtics
knicks heat warriors spurs basketball volleyball softball golf racing nascar1 ferrari1
porsche911 mustang1 camaro1 corvette1 chevy chevrolet ford bmw audi honda nissan mazda subaru
volvo jeep harleydavidson ducati kawasaki suzuki monkey123 dragon123 dragons tiger lion eagle
wolf bear shark dolphin horse horses pony puppy kitty kitten doggy doggie pussycat bunny
tiger123 lion123 butterfly rainbow flowers rose roses lily daisy tulip jasmine1 cherry apple
orange1 lemon mango peach chocolate vanilla caramel candy honey sugar cookies cookie1 pizza
burger hotdog taco coffee1 beer whiskey vodka tequila wine party partytime sexy sexygirl hottie
baby babygirl babyboy baby123 angel1 angelface darling dearest sweety sweetpea precious summer1
winter1 spring autumn fall monday friday sunday january february march april june july august
september october november december america usa canada mexico brazil england london1 paris
france germany berlin italy rome spain madrid russia moscow china beijing japan tokyo india
australia sydney newyork california texas florida chicago1 boston1 dallas1 houston miami seattle
denver soldier warrior ninja pirate samurai viking knight1 hunter1 killer1 assassin sniper
hacker hacked cyber security server network system systems computer1 internet1 windows linux
apple123 google facebook twitter instagram linkedin myspace youtube yahoo hotmail gmail outlook
microsoft amazon netflix spotify paypal ebay skype iphone android samsung1 nokia blackberry dell
lenovo toshiba acer michael1 jennifer1 jessica1 ashley1 amanda1 daniel1 joshua1 matthew1 andrew1
robert1 thomas1 charlie1 william1 jordan1 taylor1 hannah1 nicole1 michelle1 samantha1 elizabeth
christopher anthony1 alexander benjamin nathan justin1 brandon1 patrick1 richard1 steven1
joseph1 jonathan kevin brian eric jason david james1 john mark paul peter george1 edward1 scott
chris1 mike1 alex sarah laura lisa maria anna emma olivia sophie natalie rebecca stephanie amber
tiffany brittany courtney danielle lauren1 megan rachel1 kimberly vanessa alexis alyssa
christina diana monica veronica victoria1 isabella sophia mia charlotte abigail emily madison1
chloe grace lily1 zoe ella ava noah liam mason ethan logan lucas jacob aiden jackson1 sebastian
gabriel julian caleb isaac ryan tyler zachary dylan whatever1 nothing blahblah blah qwerty12
qwerty1 azerty azertyuiop qwertz qwertzuiop passwort motdepasse contrasena contrase wachtwoord
lozinka haslo salasana jelszo parola senha sifre heslo geslo parool master123 secret123 secret1
shadow1 sunshine1 princess1 football1 baseball1 superman1 batman1 starwars1 computer12 soccer1
hockey1 killer123 freedom1 letmein1 welcome12 summer2020 summer2021 summer2022 summer2023
summer2024 winter2020 winter2021 winter2022 password2020 password2021 password2022 password2023
password2024 password2025 password2026 welcome2020 welcome2021 welcome2022 welcome2023
welcome2024 welcome2025 welcome2026 spring2024 autumn2024 fall2024 company company123 business
office office123 work work123 school school123 student teacher college university classroom
qwerty1234567 1234567891 12345678910 123456789010 12345678900 1234567899 0123456789a aaaaaaaaaa
abcabcabc abcabcabcabc xxxxxxxxxx zzzzzzzzzz qqqqqqqqqq asdasdasd qweqweqwe zxczxczxc iloveyou12
iloveyou11 loveyou123 imissyou1 forever1 forever21 alwayslove thequickbrownfox
correcthorsebatterystaple letmeinplease pleaseletmein openthedoor accessgranted accessdenied
superuser superadmin sysadmin webmaster postmaster support helpdesk service services manager
management operator oracle mysql postgres database backup private public access1 access123
login123 logmein signin entry enterprise
"""

COMMON_PASSWORDS: frozenset[str] = frozenset(_LIST.split())
